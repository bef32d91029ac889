"""Worker-crash recovery: the sweeper ends or re-queues runs whose worker is gone.

A running run's worker renews its lease every GENIE_RUN_LEASE / 3 seconds. When a lease
expires, the worker is presumed dead (kill -9, OOM, lost machine): a run that emitted no
text yet is re-queued; otherwise it is failed with ``worker_lost``, its partial text
(rebuilt from the stored deltas) is kept, and ``error`` + ``finish`` end waiting streams.
Runs queued for longer than GENIE_QUEUED_RUN_GRACE (their task was lost, e.g. the broker
was down at commit) are enqueued again; the run's lease makes a duplicate harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.models import Message
from runs import tasks
from runs.events import emit_terminal_events
from runs.models import Run, RunEvent
from runs.services import enqueue_next_run

logger = logging.getLogger(__name__)


def partial_text(run: Run) -> str:
    deltas = RunEvent.objects.filter(run=run, type="text-delta").order_by("seq").values_list("data", flat=True)
    return "".join(data.get("delta", "") for data in deltas)


def sweep_runs() -> dict[str, int]:
    """One pass; safe to run from several processes at once (rows are locked, skip_locked)."""
    now = timezone.now()
    failed = requeued = 0
    with transaction.atomic():
        dead = list(
            Run.objects.select_for_update(skip_locked=True)
            .filter(status=Run.Status.RUNNING, lease_expires_at__lt=now)
            .select_related("agent_message", "session")
        )
        lost = []
        for run in dead:
            if run.first_token_at is None and run.attempts < 3:
                run.status = Run.Status.QUEUED
                run.lease_owner, run.lease_expires_at = "", None
                run.save(update_fields=["status", "lease_owner", "lease_expires_at", "updated_at"])
                transaction.on_commit(partial(tasks.execute_run.delay, run.pk))
                requeued += 1
                continue
            text = partial_text(run)
            Message.objects.filter(pk=run.agent_message_id).update(
                text=text, status=Message.Status.FAILED, updated_at=now
            )
            run.status = Run.Status.FAILED
            run.error_code = "worker_lost"
            run.error_message = "The worker executing this run stopped responding."
            run.finished_at = now
            run.lease_owner, run.lease_expires_at = "", None
            run.save()
            lost.append(run)
        stale = Run.objects.filter(
            status=Run.Status.QUEUED, created_at__lt=now - timedelta(seconds=settings.GENIE_QUEUED_RUN_GRACE)
        ).values_list("pk", flat=True)
        for run_id in stale:
            transaction.on_commit(partial(tasks.execute_run.delay, run_id))
            requeued += 1
    for run in lost:
        closing = [("error", {"errorText": run.error_message}), ("finish", {})]
        if run.first_token_at is not None:
            closing.insert(0, ("text-end", {"id": f"pending-message-{run.agent_message.uuid}"}))
        emit_terminal_events(run=run, events=closing)
        enqueue_next_run(session_id=run.session_id)
        failed += 1
        logger.warning("Run %s failed: worker lost", run.uuid)
    return {"failed": failed, "requeued": requeued}
