"""Delete stored run events older than the retention (default GENIE_EVENT_RETENTION, 24 h)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.retention import purge_events

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(value: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", value.strip())
    if not match:
        raise CommandError(f"--older-than takes a number and a unit (s, m, h, d), e.g. 24h; got {value!r}.")
    return timedelta(**{UNITS[match[2]]: int(match[1])})


class Command(BaseCommand):
    help = "Delete run events older than the retention, in batches. Messages, runs and feedback are kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", help="age such as 24h, 90m, 7d (default: GENIE_EVENT_RETENTION)")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        older_than = parse_age(options["older_than"]) if options["older_than"] else None
        count = purge_events(older_than=older_than, dry_run=options["dry_run"], batch_size=options["batch_size"])
        verb = "Would delete" if options["dry_run"] else "Deleted"
        self.stdout.write(f"{verb} {count} events.")
