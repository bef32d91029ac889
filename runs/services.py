"""Writes for runs: queue a turn, stop a session's runs."""

from __future__ import annotations

import contextlib
from functools import partial

import redis
from django.db import transaction
from django.utils import timezone

from chat.models import Message, Session
from runs import tasks
from runs.events import emit_terminal_events, redis_client, stop_key, stopped_unstarted_events
from runs.exceptions import RunActive
from runs.models import Run

ON_ACTIVE_RUN_CHOICES = ("reject", "enqueue", "interrupt")


def make_way_for_turn(*, session: Session, on_active_run: str = "reject") -> None:
    """Apply the busy-session policy before a new turn (call with the session row locked):
    ``reject`` raises ``RunActive``; ``enqueue`` lets the new run wait its turn;
    ``interrupt`` stops the active runs (their partial text is kept) first."""
    active = session.runs.active().order_by("created_at").first()
    if active is None or on_active_run == "enqueue":
        return
    if on_active_run == "interrupt":
        stop_session(session=session)
        return
    raise RunActive(details={"run_uuid": str(active.uuid), "status": active.status})


def enqueue_next_run(*, session_id: int) -> None:
    """After a run ends, start the session's next queued run (runs of a session go one at a time)."""
    next_run = Run.objects.filter(session_id=session_id, status=Run.Status.QUEUED).order_by("created_at", "id").first()
    if next_run is not None:
        tasks.execute_run.delay(next_run.pk)


def queue_run(*, session: Session, user_message: Message) -> Run:
    """A pending agent message and a queued run; the task is enqueued after commit."""
    agent = session.agent
    agent_message = Message.objects.create(
        session=session,
        sender_role=Message.SenderRole.AGENT,
        status=Message.Status.PENDING,
        provider=agent.provider,
        model_id=agent.model,
        temperature=agent.temperature,
        metadata=user_message.metadata,
    )
    run = Run.objects.create(session=session, user_message=user_message, agent_message=agent_message)
    transaction.on_commit(partial(tasks.execute_run.delay, run.pk))
    return run


def stop_session(*, session: Session) -> bool:
    """Stop the session's active runs (the running one and any queued behind it).

    A queued run no worker holds yet is ended here with ``abort`` + ``finish``; a running
    one is flagged in PostgreSQL and Redis and its worker stops within a poll interval.
    Returns whether anything was stopped; stopping twice is harmless.
    """
    with transaction.atomic():
        runs = list(session.runs.active().select_for_update().select_related("agent_message", "session"))
        now = timezone.now()
        unstarted = []
        for run in runs:
            if run.stop_requested_at is None:
                run.stop_requested_at = now
                run.save(update_fields=["stop_requested_at", "updated_at"])
            if run.status == Run.Status.QUEUED:
                run.status = Run.Status.STOPPED
                run.finished_at = now
                run.save(update_fields=["status", "finished_at", "updated_at"])
                Message.objects.filter(pk=run.agent_message_id).update(status=Message.Status.STOPPED, updated_at=now)
                unstarted.append(run)
        transaction.on_commit(partial(_signal_stop, runs=runs, unstarted=unstarted))
    return bool(runs)


def _signal_stop(*, runs: list[Run], unstarted: list[Run]) -> None:
    for run in runs:
        with contextlib.suppress(redis.RedisError):  # the worker falls back to stop_requested_at
            redis_client().set(stop_key(str(run.uuid)), 1, ex=3600)
    for run in unstarted:
        emit_terminal_events(run=run, events=stopped_unstarted_events(run))
