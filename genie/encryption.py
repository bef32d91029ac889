"""Secrets at rest (OAuth tokens, client secrets, PKCE verifiers): Fernet through
``cryptography``'s ``MultiFernet`` with the keys of ``GENIE_ENCRYPTION_KEY``.

The first key encrypts; every key decrypts, so a key is rotated by prepending a new one
(values written before keep working; ``manage.py rotate_encryption`` re-encrypts them
with the first key, after which the old key can go). ``EncryptedTextField`` stores a
string encrypted and gives it back decrypted: the plain value exists only in memory.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class DecryptionFailed(Exception):
    """A stored value none of the configured keys decrypts (a key was removed too soon)."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "GENIE_ENCRYPTION_KEY holds a value that is not a Fernet key (32 url-safe base64-encoded bytes; "
            'make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.GENIE_ENCRYPTION_KEY))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionFailed("A stored secret could not be decrypted with GENIE_ENCRYPTION_KEY.") from exc


def reencrypt(token: str) -> str:
    """``token`` encrypted with the first key (key rotation)."""
    return fernet().rotate(token.encode()).decode()


class EncryptedTextField(models.TextField):
    """A string stored Fernet-encrypted ('' stays ''). Never filter on it: each write
    gives a different ciphertext."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
