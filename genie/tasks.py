"""Celery tasks of the project package: thin, the work lives in the module named."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="genie.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys() -> None:
    from genie import idempotency

    idempotency.purge_expired_keys()
