"""Event retention: events older than GENIE_EVENT_RETENTION are deleted in batches.
Messages, runs and feedback are never touched."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from runs.models import RunEvent

BATCH_SIZE = 5_000


def purge_events(*, older_than: timedelta | None = None, dry_run: bool = False, batch_size: int = BATCH_SIZE) -> int:
    """Delete events created before now - ``older_than``; returns how many (or would be).

    Deletes by primary-key batches so no statement holds locks for long: safe while live.
    """
    cutoff: datetime = timezone.now() - (older_than or settings.GENIE_EVENT_RETENTION)
    old = RunEvent.objects.filter(created_at__lt=cutoff)
    if dry_run:
        return old.count()
    removed = 0
    while True:
        ids = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        removed += RunEvent.objects.filter(pk__in=ids).delete()[0]
    return removed
