"""Celery tasks: thin, idempotent, keyed by primary key; the work lives in ``runs.loop``."""

from __future__ import annotations

from celery import shared_task

from runs import loop, titles


@shared_task(name="runs.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run(run_id: int) -> None:
    loop.execute_run(run_id)


@shared_task(name="runs.generate_title", ignore_result=True)
def generate_title(session_id: int) -> None:
    titles.generate_title(session_id=session_id)
