"""Celery tasks: thin, idempotent, keyed by primary key; the work lives in the domain modules
(imported inside each task, so services may enqueue tasks without import cycles)."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="runs.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run(run_id: int) -> None:
    from runs import loop

    loop.execute_run(run_id)


@shared_task(name="runs.generate_title", ignore_result=True)
def generate_title(session_id: int) -> None:
    from runs import titles

    titles.generate_title(session_id=session_id)


@shared_task(name="runs.sweep_runs", ignore_result=True)
def sweep_runs() -> None:
    from runs import recovery

    recovery.sweep_runs()


@shared_task(name="runs.purge_events", ignore_result=True)
def purge_events() -> None:
    from runs import retention

    retention.purge_events()


@shared_task(name="runs.continue_run", acks_late=True, reject_on_worker_lost=True)
def continue_run(run_id: int) -> None:
    """Pick up a paused run whose pending tool calls are all answered (the loop claims
    and goes on from ``Run.state``; a separate name so logs and routing tell a
    continuation from a fresh turn)."""
    from runs import loop

    loop.execute_run(run_id)


@shared_task(name="runs.forget_session", bind=True, ignore_result=True, max_retries=3600)
def forget_session(self: Any, session_id: int) -> None:
    """Delete a session kept only while its run works (``runs.services.forget_session``);
    looks again a second later while a run of it is queued or running."""
    from runs import services

    if not services.forget_session(session_id=session_id):
        raise self.retry(countdown=1)
