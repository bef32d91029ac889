"""``manage.py rotate_encryption``: re-encrypt every stored secret with the first key of
GENIE_ENCRYPTION_KEY, after which the keys behind it can be removed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from runs.connections import reencrypt_secrets


class Command(BaseCommand):
    help = "Re-encrypt connection tokens and client secrets with the first GENIE_ENCRYPTION_KEY key."

    def handle(self, *args: Any, **options: Any) -> None:
        count = reencrypt_secrets()
        self.stdout.write(f"Re-encrypted {count} rows.")
