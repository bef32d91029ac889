"""The turn loop: claim a run, build the prompt, stream the model, emit events, store the result.

A run is a small state machine (queued → running → succeeded | failed | stopped, with
``requires_action`` reserved for pauses that wait on the outside world). Each step is a
plain function; the Celery task only calls ``execute_run``. Whatever a later step needs
to continue lives in ``Run.state``, so a paused run resumes in a new task and no worker
ever waits on a person.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.models import Message, Session
from runs.events import (
    RunEventWriter,
    emit_terminal_events,
    redis_client,
    release_connection,
    stop_key,
    stopped_unstarted_events,
)
from runs.models import Run
from runs.providers import Chunk, ProviderError, ProviderRequest, get_provider
from runs.services import enqueue_next_run

logger = logging.getLogger(__name__)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass
class TurnOutcome:
    status: str
    text: str = ""
    error_code: str = ""
    error_message: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    started_text: bool = False
    notes: list[str] = field(default_factory=list)


def execute_run(run_id: int, *, worker_id: str | None = None) -> Run | None:
    """Execute one run to its end. Exits at once when the run is finished or leased
    by another live worker (a redelivered task never does the work twice)."""
    worker_id = worker_id or worker_identity()
    claimed = claim_run(run_id, worker_id=worker_id)
    if claimed is None:
        return None
    run, writer = claimed
    try:
        outcome = stream_reply(run=run, writer=writer, worker_id=worker_id)
        finalize_run(run=run, writer=writer, outcome=outcome)
    finally:
        writer.close()
    return run


def claim_run(run_id: int, *, worker_id: str) -> tuple[Run, RunEventWriter] | None:
    """Lease the run in PostgreSQL and open its event writer (ids continue the session's)."""
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("session__agent", "agent_message", "user_message")
            .filter(pk=run_id)
            .first()
        )
        if run is None or run.is_finished:
            return None
        now = timezone.now()
        if (
            run.status == Run.Status.RUNNING
            and run.lease_owner != worker_id
            and run.lease_expires_at is not None
            and run.lease_expires_at > now
        ):
            logger.info("Run %s is leased by %s; skipping duplicate delivery", run.uuid, run.lease_owner)
            return None
        if run.stop_requested_at is None:
            Session.objects.select_for_update().filter(pk=run.session_id).first()  # serialise event ids
            if Run.objects.active().filter(session_id=run.session_id, created_at__lt=run.created_at).exists():
                return None  # an earlier turn is still going; its end enqueues this run
            writer = RunEventWriter.open(run)
            run.mark_started(lease_owner=worker_id, lease_until=now + timedelta(seconds=settings.GENIE_RUN_LEASE))
            run.save(
                update_fields=["status", "started_at", "lease_owner", "lease_expires_at", "attempts", "updated_at"]
            )
            Message.objects.filter(pk=run.agent_message_id).update(status=Message.Status.STREAMING, updated_at=now)
            return run, writer
        _stop_unstarted(run)  # a stop arrived before any worker started it
    emit_terminal_events(run=run, events=stopped_unstarted_events(run))
    return None


def _stop_unstarted(run: Run) -> None:
    now = timezone.now()
    run.status = Run.Status.STOPPED
    run.finished_at = now
    run.save(update_fields=["status", "finished_at", "updated_at"])
    Message.objects.filter(pk=run.agent_message_id).update(status=Message.Status.STOPPED, updated_at=now)


def build_prompt(run: Run) -> list[dict[str, str]]:
    """Agent instructions, the UI context of this turn, then the session's history
    (oldest first, up to GENIE_HISTORY_MESSAGES), ending with this turn's user message."""
    agent = run.session.agent
    prompt: list[dict[str, str]] = []
    if agent.instructions:
        prompt.append({"role": "system", "content": agent.instructions})
    if run.user_message.ui_context:
        prompt.append({"role": "system", "content": f"The user's current UI context: {run.user_message.ui_context}"})
    history = list(
        Message.objects.filter(session_id=run.session_id, created_at__lte=run.user_message.created_at)
        .exclude(pk=run.agent_message_id)
        .exclude(sender_role=Message.SenderRole.AGENT, text="")
        .order_by("-created_at", "-id")
        .values_list("sender_role", "text")[: settings.GENIE_HISTORY_MESSAGES]
    )
    for role, text in reversed(history):
        prompt.append({"role": "user" if role == Message.SenderRole.USER else "assistant", "content": text})
    return prompt


def provider_request(run: Run) -> ProviderRequest:
    agent = run.session.agent
    return ProviderRequest(
        model=agent.model,
        messages=build_prompt(run),
        temperature=agent.temperature,
        max_tokens=agent.max_tokens or settings.GENIE_MAX_TOKENS,
        base_url=agent.base_url,
        api_key=agent.api_key,
        timeout=settings.GENIE_PROVIDER_TIMEOUT,
    )


class StopWatch:
    """Polls the run's stop flag in Redis at most every GENIE_STOP_POLL_INTERVAL seconds,
    and renews the run's lease every third of GENIE_RUN_LEASE: no query per token."""

    def __init__(self, run: Run, worker_id: str, writer: RunEventWriter) -> None:
        self.run = run
        self.writer = writer  # its Redis connection serves the polls too
        self.worker_id = worker_id
        self.deadline = time.monotonic() + settings.GENIE_RUN_TIMEOUT
        self._next_poll = 0.0
        self._renew_every = settings.GENIE_RUN_LEASE / 3
        self._next_renew = time.monotonic() + self._renew_every
        self.stopped = False

    def should_stop(self) -> bool:
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + settings.GENIE_STOP_POLL_INTERVAL
            seen = self.writer.stop_flag_seen
            try:
                if seen is not None and now - seen[0] < settings.GENIE_STOP_POLL_INTERVAL:
                    self.stopped = self.stopped or seen[1]  # the last event's write looked already
                else:
                    self.stopped = self.stopped or bool(self.writer.redis.exists(stop_key(str(self.run.uuid))))
            except redis.RedisError:
                self.stopped = (
                    self.stopped or Run.objects.filter(pk=self.run.pk, stop_requested_at__isnull=False).exists()
                )
        if now >= self._next_renew:
            self._next_renew = now + self._renew_every
            Run.objects.filter(pk=self.run.pk, lease_owner=self.worker_id).update(
                lease_expires_at=timezone.now() + timedelta(seconds=settings.GENIE_RUN_LEASE)
            )
            release_connection()
        return self.stopped

    @property
    def timed_out(self) -> bool:
        return time.monotonic() >= self.deadline


def stream_reply(*, run: Run, writer: RunEventWriter, worker_id: str) -> TurnOutcome:
    """Call the provider with streaming and relay each piece as a ``text-delta``.

    Transient provider failures before the first token are retried with backoff;
    after it, a failure ends the run ``failed`` and keeps the partial text.
    """
    writer.emit("start", messageId=str(run.agent_message.uuid))
    provider = get_provider(run.session.agent.provider)
    request = provider_request(run)
    release_connection()  # none is held while the model streams
    watch = StopWatch(run, worker_id, writer)
    outcome = TurnOutcome(status=Run.Status.SUCCEEDED)
    parts: list[str] = []
    attempt = 0
    while True:
        try:
            relay_chunks(provider.stream(request), run=run, writer=writer, watch=watch, outcome=outcome, parts=parts)
            break
        except ProviderError as exc:
            if exc.transient and not outcome.started_text and attempt < settings.GENIE_PROVIDER_RETRIES:
                attempt += 1
                time.sleep(settings.GENIE_PROVIDER_RETRY_BACKOFF * 2 ** (attempt - 1))
                if not watch.should_stop():
                    continue
                outcome.status = Run.Status.STOPPED
                break
            logger.warning("Run %s failed: %s", run.uuid, exc)
            outcome.status = Run.Status.FAILED
            outcome.error_code, outcome.error_message = exc.code, exc.message
            break
    outcome.text = "".join(parts)
    if outcome.status == Run.Status.SUCCEEDED and watch.should_stop():
        outcome.status = Run.Status.STOPPED
    return outcome


def relay_chunks(
    chunks: Iterator[Chunk],
    *,
    run: Run,
    writer: RunEventWriter,
    watch: StopWatch,
    outcome: TurnOutcome,
    parts: list[str],
) -> None:
    """Emit each provider chunk as a ``text-delta`` until the reply ends, a stop arrives
    or the run's time is up."""
    text_id = f"pending-message-{run.agent_message.uuid}"
    for chunk in chunks:
        if chunk.text:
            first = not outcome.started_text
            if first:
                outcome.started_text = True
                run.first_token_at = timezone.now()
                writer.emit("text-start", id=text_id)
            parts.append(chunk.text)
            writer.emit("text-delta", id=text_id, delta=chunk.text)
            if first:  # stored after the first token is out: not on its way
                Run.objects.filter(pk=run.pk).update(first_token_at=run.first_token_at)
                release_connection()
        if chunk.prompt_tokens is not None:
            outcome.prompt_tokens = chunk.prompt_tokens
        if chunk.completion_tokens is not None:
            outcome.completion_tokens = chunk.completion_tokens
        if watch.should_stop():
            outcome.status = Run.Status.STOPPED
            return
        if watch.timed_out:
            outcome.status = Run.Status.FAILED
            outcome.error_code, outcome.error_message = "run_timeout", "The run exceeded its time limit."
            return


MESSAGE_STATUS = {
    Run.Status.SUCCEEDED: Message.Status.COMPLETE,
    Run.Status.FAILED: Message.Status.FAILED,
    Run.Status.STOPPED: Message.Status.STOPPED,
}


def finalize_run(*, run: Run, writer: RunEventWriter, outcome: TurnOutcome) -> None:
    """Store the message and the run's final status, then write ``finish``: a client that
    reads the transcript right after ``finish`` sees the whole text."""
    text_id = f"pending-message-{run.agent_message.uuid}"
    if outcome.started_text:
        writer.emit("text-end", id=text_id)
    if outcome.status == Run.Status.FAILED:
        writer.emit("error", errorText=outcome.error_message)
    elif outcome.status == Run.Status.STOPPED:
        writer.emit("abort")
    now = timezone.now()
    with transaction.atomic():
        message = run.agent_message
        message.text = outcome.text
        message.status = MESSAGE_STATUS[outcome.status]
        message.prompt_tokens = outcome.prompt_tokens
        message.completion_tokens = outcome.completion_tokens
        message.save(update_fields=["text", "status", "prompt_tokens", "completion_tokens", "updated_at"])
        run.status = outcome.status
        run.error_code = outcome.error_code
        run.error_message = outcome.error_message
        run.prompt_tokens = outcome.prompt_tokens
        run.completion_tokens = outcome.completion_tokens
        run.finished_at = now
        run.lease_owner = ""
        run.lease_expires_at = None
        # Named fields only: a stop request may have been stored meanwhile.
        run.save(
            update_fields=[
                "status",
                "error_code",
                "error_message",
                "prompt_tokens",
                "completion_tokens",
                "finished_at",
                "lease_owner",
                "lease_expires_at",
                "updated_at",
            ]
        )
        finish = writer.record("finish")
        writer.flush()
        if outcome.status == Run.Status.SUCCEEDED and settings.GENIE_GENERATE_TITLES and not run.session.title:
            from runs import tasks

            transaction.on_commit(partial(tasks.generate_title.delay, run.session_id))
    writer.publish(finish)
    enqueue_next_run(session_id=run.session_id)
    with contextlib.suppress(redis.RedisError):
        redis_client().delete(stop_key(str(run.uuid)))
