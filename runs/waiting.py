"""Waiting for a run's end without holding a database connection or a worker slot."""

from __future__ import annotations

import time

import redis
from django.db import close_old_connections, connection

from genie.connections import redis_client
from runs.events import StreamEvent, channel_name
from runs.models import Run

POLL_FALLBACK_SECONDS = 1.0


def wait_for_finish(*, run: Run, timeout: float) -> bool:
    """Block until ``run`` has finished (True) or ``timeout`` passes (False).

    Subscribes to the session's live channel first, then checks the database once (the
    run may already be over), then releases the database connection and listens. If Redis
    is unavailable it polls the run's row once a second instead.
    """
    deadline = time.monotonic() + timeout
    channel = channel_name(str(run.session.uuid))
    run_uuid = str(run.uuid)
    pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel)
    except redis.RedisError:
        pubsub = None
    try:
        while time.monotonic() < deadline:
            if Run.objects.filter(pk=run.pk).exclude(status__in=Run.ACTIVE_STATUSES).exists():
                return True
            connection.close()  # hold no connection while waiting
            if pubsub is None:
                time.sleep(min(POLL_FALLBACK_SECONDS, max(0.0, deadline - time.monotonic())))
                continue
            if _saw_finish(pubsub, run_uuid, deadline):
                return True
        return Run.objects.filter(pk=run.pk).exclude(status__in=Run.ACTIVE_STATUSES).exists()
    finally:
        close_old_connections()
        if pubsub is not None:
            pubsub.close()


def _saw_finish(pubsub: redis.client.PubSub, run_uuid: str, deadline: float) -> bool:
    """Read live events until this run's finish (True) or about a second passes."""
    until = min(deadline, time.monotonic() + POLL_FALLBACK_SECONDS)
    try:
        while (remaining := until - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=remaining)
            if message and message["type"] == "message":
                event = StreamEvent.unpack(message["data"])
                if event.type == "finish" and event.run_uuid == run_uuid:
                    return True
    except redis.RedisError:
        time.sleep(max(0.0, min(POLL_FALLBACK_SECONDS, until - time.monotonic())))
    return False
