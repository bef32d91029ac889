"""Waiting for a run's end without holding a database connection or a worker slot."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db import close_old_connections, connection

from chat.models import Session
from genie.connections import redis_client
from runs.events import StreamEvent, channel_name
from runs.models import Run
from runs.services import stop_session
from runs.vocabulary import ACTION_REQUESTS, FINISH, asks_for_answer

POLL_FALLBACK_SECONDS = 1.0


def wait_for_finish(*, run: Run, timeout: float, or_pause: bool = False) -> bool:
    """Block until ``run`` has finished (True) or ``timeout`` passes (False); with
    ``or_pause``, a run that waits for a person or the client (requires_action) counts as
    done too (seen within about a second of its request for action), unless every answer
    it waits for is in (it is about to go on).

    Subscribes to the session's live channel first, then checks the database once (the
    run may already be over), then releases the database connection and listens. If Redis
    is unavailable it polls the run's row once a second instead.
    """
    deadline = time.monotonic() + timeout
    channel = channel_name(str(run.session.uuid))
    run_uuid = str(run.uuid)
    waiting_on = (Run.Status.QUEUED, Run.Status.RUNNING) if or_pause else Run.ACTIVE_STATUSES
    # A paused run whose answers are all in goes on (its continuation is on its way): not done.
    done = Run.objects.filter(pk=run.pk).exclude(status__in=waiting_on).exclude(pk__in=Run.objects.ready_to_continue())
    pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channel)
    except redis.RedisError:
        pubsub = None
    try:
        while time.monotonic() < deadline:
            if done.exists():
                return True
            connection.close()  # hold no connection while waiting
            if pubsub is None:
                time.sleep(min(POLL_FALLBACK_SECONDS, max(0.0, deadline - time.monotonic())))
                continue
            if _saw_finish(pubsub, run_uuid, deadline, or_pause=or_pause):
                return True
        return done.exists()
    finally:
        close_old_connections()
        if pubsub is not None:
            pubsub.close()


@dataclass(frozen=True)
class StopOutcome:
    """What a stop request did, as the stop endpoints answer it. ``run``: the session's
    active run when the stop came (None: nothing was active), read again after the wait;
    ``stopped``: a run of the session ended ``stopped`` by it. A run whose worker was
    already ending it ends ``succeeded`` or ``failed`` all the same; one whose worker has
    not honoured the stop within the wait is still ``running`` (``stopped`` false: the
    stop is pending, and the run's own status tells how it ended)."""

    run: Run | None
    stopped: bool


def stop_and_wait(*, session: Session, timeout: float | None = None) -> StopOutcome:
    """``runs.services.stop_session``, then wait (at most ``timeout``, GENIE_STOP_WAIT by
    default; no database connection held) for the running run's worker to end it, and
    read what became of the runs: never a stop claimed that did not happen."""
    runs = stop_session(session=session)
    if not runs:
        return StopOutcome(run=None, stopped=False)
    active = runs[0]
    timeout = settings.GENIE_STOP_WAIT if timeout is None else timeout
    if active.status == Run.Status.RUNNING and timeout > 0:
        wait_for_finish(run=active, timeout=timeout)
    statuses = dict(Run.objects.filter(pk__in=[run.pk for run in runs]).values_list("pk", "status"))
    active.status = statuses.get(active.pk, active.status)
    return StopOutcome(run=active, stopped=Run.Status.STOPPED in statuses.values())


def wait_for_continuation(run: Run, *, paused_at: datetime, timeout: float = 5.0) -> None:
    """After answers, a paused run stays ``requires_action`` until a worker claims it again:
    wait (briefly) until it has left the pause the answers were for (``paused_at``: the
    run's ``updated_at`` then), so that a wait for its reply does not take that pause for
    the reply's end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = Run.objects.filter(pk=run.pk).values_list("status", "updated_at").first()
        if current is None or current[0] != Run.Status.REQUIRES_ACTION or current[1] != paused_at:
            return
        time.sleep(0.02)


def _saw_finish(pubsub: redis.client.PubSub, run_uuid: str, deadline: float, *, or_pause: bool = False) -> bool:
    """Read live events until this run's finish (True) or about a second passes. With
    ``or_pause``, a request for action ends the read early (False): the run pauses once
    its worker commits, which the caller reads from the database."""
    until = min(deadline, time.monotonic() + POLL_FALLBACK_SECONDS)
    try:
        while (remaining := until - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=remaining)
            if message and message["type"] == "message":
                event = StreamEvent.unpack(message["data"])
                if event.run_uuid != run_uuid:
                    continue
                if event.type == FINISH:
                    return True
                if (
                    or_pause
                    and event.type in ACTION_REQUESTS
                    and asks_for_answer(event.type, json.loads(event.data_json))
                ):
                    return False
    except redis.RedisError:
        time.sleep(max(0.0, min(POLL_FALLBACK_SECONDS, until - time.monotonic())))
    return False
