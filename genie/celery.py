"""The Celery app. Workers run the threads pool: turns are long and I/O-bound."""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Celery, bootsteps
from celery.signals import worker_process_init, worker_ready
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genie.settings")

app = Celery("genie")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

# A key in the broker's Redis, without expiry: present, the broker kept its data (and the
# tasks in its queues); gone, Redis restarted empty (or was flushed) and took them along.
BROKER_MARK = "genie:broker-mark"


class RequeueLostTasks(bootsteps.StartStopStep):
    """Each time the worker's consumer connects to the broker (at start, and after every
    reconnection: Celery starts the consumer's steps again), a broker whose mark is gone
    lost its tasks: the first worker to set the mark again enqueues the runs waiting for a
    task (``runs.recovery.requeue_lost_tasks``), so a run whose task died with Redis starts
    as soon as the broker is back, not after the sweeper's grace (GENIE_QUEUED_RUN_GRACE).
    Only for a Redis broker; a failure here is logged and left to the sweeper."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        from django.conf import settings

        from runs.recovery import requeue_lost_tasks

        if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
            return
        try:
            client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5, socket_connect_timeout=2)
            try:
                lost = bool(client.set(BROKER_MARK, 1, nx=True))
            finally:
                client.close()
            if lost:
                requeue_lost_tasks()
        except Exception:  # the sweeper re-enqueues after its grace; the consumer must start anyway
            logger.exception("Could not look for tasks the broker lost")
        finally:
            close_old_connections()


app.steps["consumer"].add(RequeueLostTasks)


@worker_ready.connect
def preload_providers(**_: object) -> None:
    from runs.providers import preload_providers

    preload_providers()


@worker_ready.connect
@worker_process_init.connect
def keep_leases(**_: object) -> None:
    """Renew the leases of this process's runs from one thread (``runs.leases``): a turn
    whose model is silent longer than GENIE_RUN_LEASE keeps its run."""
    from runs.leases import keeper

    keeper.start()
