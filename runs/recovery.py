"""The sweeper: ends, re-queues or re-enqueues runs that nobody is moving forward.

- A running run's worker renews its lease every GENIE_RUN_LEASE / 3 seconds. When the
  lease expires the worker is presumed dead (kill -9, OOM, lost machine): a run that
  emitted no text yet, or whose checkpoint holds a step's recorded tool calls
  (``Run.store_state``), is re-queued (at most three attempts): the next worker resumes
  from the checkpoint, those calls included, without asking the model again (a call
  whose execution had started fails ``outcome_unknown`` unless its tool is idempotent,
  ``runs.tool_calls.StepCalls.execute``). A run whose worker noted its outcome (the reply
  finished, ``Run.state["outcome"]``) and died while ending it is ended with that
  outcome; otherwise it ends
  ``failed``/``worker_lost`` with the text its clients saw (``end_run`` reads it from the
  event log, Redis included) and ``error`` + ``finish``.
- A paused run (``requires_action``) holds no lease and is never re-queued: unanswered
  for GENIE_ACTION_TTL it ends ``failed``/``action_expired``; answered but not picked up
  within GENIE_QUEUED_RUN_GRACE (its task was lost), its continuation is enqueued again.
- Runs queued for longer than GENIE_QUEUED_RUN_GRACE (their task was lost, e.g. the
  broker was down at commit) are enqueued again; the run's lease makes a duplicate harmless.

A broker that restarted empty (Redis without persistence) lost every queued task at once:
each worker's consumer, when it connects to the broker (at start and after every
reconnection, ``genie.celery.RequeueLostTasks``), finds the broker's mark gone and enqueues
the queued and answered runs again at once (``requeue_lost_tasks``), not a sweep and a
grace later. A duplicate delivery is refused by the claim (``runs.loop.claim_run``: the
run's row is locked, a leased or finished run is skipped), so enqueuing too often costs a
query, never a second turn.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs import tasks
from runs.events import read_run_log
from runs.models import Run
from runs.services import Usage, end_run

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
WORKER_LOST = "The worker executing this run stopped responding."
ACTION_EXPIRED = "Nobody answered the run's pending tool call in time."


def sweep_runs() -> dict[str, int]:
    """One pass; safe to run from several processes at once (rows are locked with
    skip_locked, and ``end_run`` ends a run once)."""
    now = timezone.now()
    grace = now - timedelta(seconds=settings.GENIE_QUEUED_RUN_GRACE)
    counts = {"failed": 0, "requeued": 0, "expired": 0, "resumed": 0, "ended": 0}
    with transaction.atomic():
        locked = Run.objects.select_for_update(skip_locked=True, of=("self",)).select_related(
            "agent_message", "session"
        )
        for run in locked.lease_expired(now):
            if outcome := run.state.get("outcome"):  # its worker died while ending it
                if end_run(
                    run=run,
                    status=outcome["status"],
                    error_code=outcome["error_code"],
                    error_message=outcome["error_message"],
                    reply=run.state.get("text", ""),
                    usage=Usage(**run.state.get("usage", {})),
                    finish_reason=outcome["finish_reason"],
                ):
                    counts["ended"] += 1
            elif run.attempts < MAX_ATTEMPTS and (run.first_token_at is None or run.state.get("calls")):
                read_run_log(run, store_unflushed=True)  # its `start`, which the next attempt does not repeat
                run.mark_requeued()
                transaction.on_commit(partial(tasks.execute_run.delay, run.pk))
                counts["requeued"] += 1
            elif end_run(run=run, status=Run.Status.FAILED, error_code="worker_lost", error_message=WORKER_LOST):
                counts["failed"] += 1
                logger.warning("Run %s failed: worker lost", run.uuid)
        for run in locked.action_expired(now):
            if end_run(run=run, status=Run.Status.FAILED, error_code="action_expired", error_message=ACTION_EXPIRED):
                counts["expired"] += 1
        for run_id in Run.objects.filter(status=Run.Status.QUEUED, created_at__lt=grace).values_list("pk", flat=True):
            transaction.on_commit(partial(tasks.execute_run.delay, run_id))
            counts["requeued"] += 1
        for run_id in Run.objects.ready_to_continue().filter(updated_at__lt=grace).values_list("pk", flat=True):
            transaction.on_commit(partial(tasks.continue_run.delay, run_id))
            counts["resumed"] += 1
    return counts


def requeue_lost_tasks() -> int:
    """Enqueue again every run whose task the broker may have lost: the queued ones and the
    answered pauses (continuations). Called when the broker came back empty; returns how
    many were enqueued."""
    queued = list(Run.objects.filter(status=Run.Status.QUEUED).values_list("pk", flat=True))
    answered = list(Run.objects.ready_to_continue().values_list("pk", flat=True))
    for run_id in queued:
        tasks.execute_run.delay(run_id)
    for run_id in answered:
        tasks.continue_run.delay(run_id)
    if queued or answered:
        logger.warning(
            "The broker lost its tasks: %s queued and %s answered runs enqueued again", len(queued), len(answered)
        )
    return len(queued) + len(answered)
