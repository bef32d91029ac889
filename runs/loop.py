"""The turn loop: claim a run, then work in steps (one model call each) until the reply
is done, the run must wait on the outside world, or it is stopped or fails.

A run is a small state machine (queued → running → succeeded | failed | stopped, and
running ⇄ requires_action while a tool call waits for its answer). Status changes are
``Run.mark_*``; the worker's end of a run is ``runs.services.finish_run``, its pause
``runs.services.pause_run``. Whatever a later task needs to continue lives in
``Run.state`` (see ``Run``), so a paused run holds no worker thread: when its answers
are in, ``runs.continue_run`` claims it again and the loop goes on from that state.

``Turn`` owns the model step; the step's tool calls have their own owner,
``runs.tool_calls.StepCalls`` (record → advance → report).

One turn's stream: ``start``, then per model call ``start-step``, the text
(``text-start``/``text-delta``/``text-end``) and tool calls (``tool-input-start``,
``tool-input-delta``, then ``StepCalls``' events), ``finish-step``; after a pause the
answers (``tool-output-available`` / ``tool-output-error``) and the next step; last
``finish``, written by ``finish_run``. The names are ``runs.vocabulary``'s.

A compaction run (``Run.kind``: ``POST sessions/{s}/compact``) is claimed, leased, stopped,
swept and ended the same way; ``execute_compaction`` does its one model call, the summary.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.files import ensure_text
from chat.models import Message
from genie.connections import release_connection, retry_when_disconnected
from runs import compaction
from runs import vocabulary as ev
from runs.compaction import DEFAULT_KEEP_LAST, compact_before_turn, compaction_data
from runs.context import PromptParts, count_usage, prompt_parts
from runs.early import EarlyStart
from runs.events import LoggedEvent, OpenParts, RunEventWriter, read_run_log
from runs.leases import LeaseLost, keeper
from runs.models import Run
from runs.options import ClientSettings, with_instructions
from runs.providers import Chunk, ProviderError, ProviderRequest, ToolDefinition, get_provider
from runs.services import Usage, end_run, finish_run, pause_run
from runs.tool_calls import StepCalls, StreamedCall, api_time, new_call_id

logger = logging.getLogger(__name__)

PAUSED = "paused"  # a step's outcome, not a run status: the run goes requires_action


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def execute_run(run_id: int, *, worker_id: str | None = None) -> Run | None:
    """Execute a claimable run (queued, an answered pause, or a dead worker's) until it
    ends or pauses. Exits at once when the run is finished, paused and still waiting,
    or leased by another live worker (a redelivered task never does the work twice)."""
    worker_id = worker_id or worker_identity()
    # A fresh turn's first model call starts once the claim is decided, while it is
    # recorded (``runs.early``); nothing is published before the claim is committed.
    early = EarlyStart(get_provider, provider_request, turn_prompt_parts)
    try:
        # The claim is one transaction: one that failed with a lost connection is run again
        # (a call its first attempt started is dropped by the next ``begin``).
        claimed = retry_when_disconnected(
            lambda: claim_run(run_id, worker_id=worker_id, decided=early.begin), what="the claim"
        )
    except BaseException:
        early.cancel()
        raise
    if claimed is None:
        early.cancel()
        return None
    run, writer = claimed
    keeper.hold(run.pk, worker_id)
    try:
        if run.is_compaction:
            execute_compaction(run=run, writer=writer, worker_id=worker_id)
        else:
            turn = Turn(run=run, writer=writer, worker_id=worker_id, early=early)
            turn.settle(turn.drive())
    except LeaseLost:
        # Another worker answers the run now (or it was ended): what this one buffered is
        # dropped, not stored beside the other's events.
        logger.warning("Run %s: its lease was taken from worker %s, which stops here", run.uuid, worker_id)
    finally:
        early.cancel()  # a turn that never asked the model (stopped at once, say)
        keeper.release(run.pk)
        writer.close()
    return run


def claim_run(
    run_id: int, *, worker_id: str, decided: Callable[[Run], None] | None = None
) -> tuple[Run, RunEventWriter] | None:
    """Lease the run in PostgreSQL and open its event writer (ids continue the session's).

    A run stopped before any worker started it is ended here (``start``, ``abort``,
    ``finish``), once the runs before it in its session have ended. ``decided(run)`` is
    called once the run is this worker's (locked, every refusal behind it), before the
    lease and statuses are written.
    """
    with transaction.atomic():
        run = Run.objects.locked_for_claim(run_id)
        if run is None or run.is_finished:
            return None
        if run.status == Run.Status.REQUIRES_ACTION and run.tool_calls.open().exists():
            return None  # still waiting for an answer; the last answer enqueues it
        now = timezone.now()
        if (
            run.status == Run.Status.RUNNING
            and run.lease_owner != worker_id
            and run.lease_expires_at is not None
            and run.lease_expires_at > now
        ):
            logger.info("Run %s is leased by %s; skipping duplicate delivery", run.uuid, run.lease_owner)
            return None
        # The session row serialises event ids. One query locks it and reads whether an
        # earlier turn is still going and the session's last stored event id.
        session = Run.objects.lock_session_of(run)
        if session is None or session.earlier_active:
            return None  # an earlier turn is still going; its end enqueues this run
        if run.stop_requested_at is not None and run.status == Run.Status.QUEUED:
            end_run(run=run, status=Run.Status.STOPPED)  # stopped before any worker started it
            return None
        if decided is not None:
            decided(run)
        writer = RunEventWriter.open(run, stored_seq=session.stored_seq)
        run.mark_started(lease_owner=worker_id, lease_until=now + timedelta(seconds=settings.GENIE_RUN_LEASE))
        if run.agent_message is not None:  # a compaction has none
            run.agent_message.mark_streaming()
        return run, writer


def retried_end(writer: RunEventWriter, end: Callable[[], bool]) -> None:
    """Run ``end`` (``finish_run`` or ``pause_run``: one transaction that records the
    closing events, stores them and publishes them after commit) again when the
    database connection was lost during it: the transaction failed as a whole, so the
    writer forgets the events it recorded (the batch before them is stored first) and
    the next attempt records them again with the same ids."""
    writer.flush()
    next_seq = writer.next_seq

    def attempt() -> bool:
        writer.rewind(next_seq)
        return end()

    retry_when_disconnected(attempt, what="the run's end")


def emit_start(run: Run, writer: RunEventWriter, logged: list[LoggedEvent]) -> None:
    """``start``, once per run: a run claimed again (re-queued after a crash, or a
    continuation) finds it in its log (``logged``: PostgreSQL and Redis, read once by the
    caller) and sends no second one. The first claim reads nothing: the token path stays
    one Redis command."""
    if any(event.type == ev.START for event in logged):
        return
    writer.emit(ev.START, **run.start_fields)


def turn_prompt_parts(run: Run) -> PromptParts:
    """What the run's prompt is made of (``runs.context.prompt_parts``): three queries. A
    PDF whose text the upload's task has not extracted yet is extracted here (bounded:
    ``chat.files.ensure_text``), so the model always reads it."""
    parts = prompt_parts(
        session=run.session, user_message=run.user_message, upto=run.user_message, exclude_pk=run.agent_message_id
    )
    for upload in parts.pending_uploads():
        ensure_text(upload)
    return parts


def build_prompt(run: Run, parts: PromptParts | None = None) -> list[dict[str, Any]]:
    """Agent instructions, the UI and scan context of this turn, the latest summary, then
    the session's history after it (oldest first, up to GENIE_HISTORY_MESSAGES), ending
    with this turn's user message; a user message's attachments join its content."""
    return (parts or turn_prompt_parts(run)).messages()


def provider_request(
    run: Run,
    turn_messages: list[dict[str, Any]],
    tools: tuple[ToolDefinition, ...] = (),
    parts: PromptParts | None = None,
) -> ProviderRequest:
    """The model call of one step: the prompt, then this turn's earlier steps (assistant
    tool calls and their results), with the tools the model may call, and what the client
    asked of the turn (``runs.options``). ``parts``: the prompt's parts when the caller has
    them (read once per turn)."""
    agent = run.session.agent
    asked = ClientSettings.from_dict(run.client_settings)
    return ProviderRequest(
        tools=tools,
        model=agent.model,
        messages=[*with_instructions(build_prompt(run, parts), asked.instructions), *turn_messages],
        temperature=agent.temperature if asked.temperature is None else asked.temperature,
        max_tokens=asked.max_tokens_within(agent.max_tokens or settings.GENIE_MAX_TOKENS),
        base_url=agent.base_url,
        api_key=agent.api_key,
        timeout=settings.GENIE_PROVIDER_TIMEOUT,
        top_p=asked.top_p,
        presence_penalty=asked.presence_penalty,
        frequency_penalty=asked.frequency_penalty,
        seed=asked.seed,
        stop=asked.stop,
        response_format=asked.response_format,
        tool_choice=asked.tool_choice if tools else None,
    )


class StopWatch:
    """Polls the run's stop flag in Redis at most every GENIE_STOP_POLL_INTERVAL seconds,
    and renews the run's lease every third of GENIE_RUN_LEASE: no query per token. In a
    worker process the ``LeaseKeeper`` renews it too, between tokens; a lease that is no
    longer this worker's raises ``LeaseLost`` (the turn stops without writing)."""

    def __init__(self, run: Run, worker_id: str, writer: RunEventWriter) -> None:
        self.run = run
        self.writer = writer  # its Redis connection serves the polls too
        self.worker_id = worker_id
        self.deadline = time.monotonic() + settings.GENIE_RUN_TIMEOUT
        self._next_poll = 0.0
        self._renew_every = settings.GENIE_RUN_LEASE / 3
        self._next_renew = time.monotonic() + self._renew_every
        self.stopped = False

    def check_lease(self) -> None:
        """Raise ``LeaseLost`` once the keeper found the run taken: a set lookup, asked
        before each chunk goes out."""
        if keeper.lost(self.run.pk):
            raise LeaseLost(self.run.uuid)

    def should_stop(self) -> bool:
        self.check_lease()
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + settings.GENIE_STOP_POLL_INTERVAL
            try:
                self.stopped = self.stopped or self.writer.stop_requested(fresh_for=settings.GENIE_STOP_POLL_INTERVAL)
            except redis.RedisError:
                self.stopped = (
                    self.stopped or Run.objects.filter(pk=self.run.pk, stop_requested_at__isnull=False).exists()
                )
        if now >= self._next_renew:
            self._next_renew = now + self._renew_every
            renewed = retry_when_disconnected(
                lambda: self.run.renew_lease(worker_id=self.worker_id, seconds=settings.GENIE_RUN_LEASE),
                what="a lease renewal",
            )
            release_connection()
            if not renewed:
                raise LeaseLost(self.run.uuid)
        return self.stopped

    @property
    def timed_out(self) -> bool:
        return time.monotonic() >= self.deadline


@dataclass
class TurnEnd:
    """How a turn (or the part of it this task ran) ended: a final run status, or PAUSED."""

    status: str
    error_code: str = ""
    error_message: str = ""


class Turn:
    """One run as its worker executes it: the event writer, the stop watch, what is open
    in the stream, the usage so far, the tools on offer and the step's calls (``calls``),
    and ``state`` (saved to ``Run.state`` at a pause)."""

    def __init__(self, *, run: Run, writer: RunEventWriter, worker_id: str, early: EarlyStart | None = None) -> None:
        self.run = run
        self.early = early
        self.writer = writer
        self.worker_id = worker_id
        self.watch = StopWatch(run, worker_id, writer)
        self.parts = OpenParts(started=True)
        self.state: dict[str, Any] = {
            "steps": 0,
            "text": "",
            "messages": [],
            "calls": [],
            "reported": [],
            "decided": [],
            "connected": [],
            "usage": {},
            **copy.deepcopy(run.state),
        }
        self.usage = Usage(**self.state["usage"])
        self._parts: PromptParts | None = early.parts if early is not None else None  # read at the claim
        self.finish_reason: str | None = None  # the last model call's, as the provider said it
        self.action_expires_at = timezone.now() + timedelta(seconds=settings.GENIE_ACTION_TTL)
        self.provider = get_provider(run.session.agent.provider)
        self.calls = StepCalls(
            run=run,
            writer=writer,
            state=self.state,
            worker_id=worker_id,
            expires_at=self.action_expires_at,
            offers_tools=self.provider.supports_tools,
            should_stop=self.watch.should_stop,
        )

    # --- the turn --------------------------------------------------------------------

    def drive(self) -> TurnEnd:
        """Emit ``start`` (once per run, even after a crash and re-queue), settle the tool
        calls a paused run was waiting on, then call the model step by step until a step
        calls no tool, or its calls wait for an answer (the run pauses)."""
        logged = read_run_log(self.run) if self.run.attempts > 1 else []  # no query on a first claim
        self.emit_start(logged)
        if self.state["steps"] == 0 and not self.calls.pending:
            self.compact_if_needed()
        # A run re-queued after its worker died inside a step resumes that step's recorded
        # calls (never asks the model again) and closes the step the dead worker left open,
        # unless its ``finish-step`` went out before it died (published, not yet checkpointed).
        resumed_step = self.state.pop("step_open", False) and (
            not logged or OpenParts.of([event.type for event in logged]).step_open
        )
        self.calls.skip_reported(logged)
        if self.calls.pending:
            self.parts.step_open = resumed_step
            settled = self.calls.advance()
            if resumed_step:
                self.end_step(settled=settled)
            if not settled:
                return TurnEnd(PAUSED)  # continued too early: an answer is still missing
        max_steps = self.run.session.agent.max_steps or settings.GENIE_MAX_STEPS
        while True:
            if self.state["steps"] >= max_steps:
                return TurnEnd(
                    Run.Status.FAILED, "max_steps", f"The turn reached its limit of {max_steps} model calls."
                )
            end = self.step()
            if end is not None:
                return end

    def settle(self, end: TurnEnd) -> None:
        if end.status == PAUSED:
            self.state["usage"] = asdict(self.usage)
            retried_end(
                self.writer,
                lambda: pause_run(
                    run=self.run,
                    writer=self.writer,
                    state=self.state,
                    text=self.state["text"],
                    worker_id=self.worker_id,
                    expires_at=self.action_expires_at,
                ),
            )
            return
        if end.status == Run.Status.FAILED:
            logger.warning("Run %s failed: %s %s", self.run.uuid, end.error_code, end.error_message)
        finish_reason = ev.finish_reason(self.finish_reason) if end.status == Run.Status.SUCCEEDED else None
        # Noted first: a worker killed while ending the run leaves its outcome to whoever
        # takes it over (``runs.recovery``), not a complete reply marked worker_lost.
        self.state["outcome"] = {**asdict(end), "finish_reason": finish_reason}
        self.checkpoint()
        metadata = retry_when_disconnected(self.finish_metadata, what="the finish's figures")
        retried_end(
            self.writer,
            lambda: finish_run(
                run=self.run,
                writer=self.writer,
                worker_id=self.worker_id,
                status=end.status,
                error_code=end.error_code,
                error_message=end.error_message,
                text=self.state["text"],
                usage=self.usage,
                open_parts=self.parts,
                finish_metadata=metadata,
                finish_reason=finish_reason,
            ),
        )

    def finish_metadata(self) -> dict[str, Any]:
        """The ``finish`` chunk's ``messageMetadata``: the turn's usage as the provider
        reported it, and the session's context after it (``runs.context``; the reply is
        not stored yet, so it is counted here). Without a tokenizer, no context figures:
        a run never fails for its statistics."""
        metadata: dict[str, Any] = {"usage": asdict(self.usage)}
        parts = self.prompt_parts()
        if self.state["text"]:
            reply = Message(sender_role=Message.SenderRole.AGENT, text=self.state["text"])
            parts = replace(parts, history=[*parts.history, reply][-settings.GENIE_HISTORY_MESSAGES :])
        total = Message.objects.filter(session_id=self.run.session_id).exclude(sender_role="agent", text="").count()
        try:
            usage = count_usage(parts, messages_total=total + bool(self.state["text"]))
        except (OSError, ValueError, ProviderError) as exc:
            logger.warning("No context figures for run %s: %s", self.run.uuid, exc)
            return metadata
        last = usage["last_compacted_at"]
        metadata["context"] = {**usage, "last_compacted_at": api_time(last) if last else None}
        return metadata

    def compact_if_needed(self) -> None:
        """Before the first step: a prompt past GENIE_AUTO_COMPACT_AT of the window is
        compacted first (``runs.compaction``), reported as ``data-compaction``. A model
        failure here leaves the prompt whole: the turn goes on."""
        session = self.run.session
        if len(self.prompt_parts().history) <= DEFAULT_KEEP_LAST:
            return  # nothing to compact: the last messages are kept (the step reuses this read)
        try:
            # Its own read of the prompt, not the steps' cached one: a run re-queued before its
            # first token (tests/runs/test_faults_live.py) failed its retry timing with the shared read.
            compaction = compact_before_turn(parts=turn_prompt_parts(self.run), session=session, provider=self.provider)
        except ProviderError as exc:
            logger.warning("Run %s: automatic compaction failed: %s", self.run.uuid, exc.message)
            return
        finally:
            release_connection()
        if compaction is not None:
            self._parts = None  # the prompt now starts from the summary
            self.writer.emit(ev.DATA_COMPACTION, data=compaction_data(compaction))

    def prompt_parts(self) -> PromptParts:
        """The prompt's parts, read once per task: the history does not change during a
        turn (its own steps are in ``state["messages"]``). Reads: read again on a new
        connection when the database connection is lost."""
        if self._parts is None:
            self._parts = retry_when_disconnected(lambda: turn_prompt_parts(self.run), what="the prompt")
        return self._parts

    def emit_start(self, logged: list[LoggedEvent]) -> None:
        emit_start(self.run, self.writer, logged)

    # --- one step: one model call ----------------------------------------------------

    def step(self) -> TurnEnd | None:
        """One model call, streamed as events, then its tool calls taken as far as they
        go now (executed, or waiting for a person or the client). Transient provider
        failures before the step's first output are retried with backoff; after it, a
        failure ends the run ``failed`` and keeps the text so far. Returns how the turn
        ends (succeeded: the step called no tool; paused: its calls wait), or None when
        the model is to be called again with the calls' results."""
        self.state["steps"] += 1
        self.writer.emit(ev.START_STEP)
        self.parts.step_open = True
        request = provider_request(
            self.run, self.state["messages"], self.calls.definitions(), parts=self.prompt_parts()
        )
        provider = self.provider
        release_connection()  # none is held while the model streams
        streamed: dict[int, StreamedCall] = {}
        step_text: list[str] = []
        self.finish_reason = None
        attempt = 0
        early = self.early.take(request) if self.early is not None else None  # once: the first step's
        while True:
            try:
                for chunk in early or provider.stream(request):
                    self.watch.check_lease()
                    self.take(chunk, step_text, streamed)
                    if self.watch.should_stop():
                        return TurnEnd(Run.Status.STOPPED)
                    if self.watch.timed_out:
                        return TurnEnd(Run.Status.FAILED, "run_timeout", "The run exceeded its time limit.")
                break
            except ProviderError as exc:
                if exc.transient and not step_text and not streamed and attempt < settings.GENIE_PROVIDER_RETRIES:
                    attempt += 1
                    early = None
                    time.sleep(settings.GENIE_PROVIDER_RETRY_BACKOFF * 2 ** (attempt - 1))
                    if self.watch.should_stop():
                        return TurnEnd(Run.Status.STOPPED)
                    continue
                return TurnEnd(Run.Status.FAILED, exc.code, exc.message)
        self.close_text()
        self.calls.record([streamed[index] for index in sorted(streamed)], "".join(step_text))
        settled = True
        if self.calls.pending:
            self.state["step_open"] = True
            self.checkpoint()  # the calls' identity is durable before any of them runs
            # What can run now runs inside the step (its outcomes before ``finish-step``).
            settled = self.calls.advance()
            self.end_step(settled=settled)
        else:
            self.writer.emit(ev.FINISH_STEP)
            self.parts.step_open = False
        if self.watch.should_stop():
            return TurnEnd(Run.Status.STOPPED)
        if not streamed:
            return self.checked_output("".join(step_text))
        return None if settled else TurnEnd(PAUSED)

    def checkpoint(self) -> None:
        """Store the turn's state while it runs (``Run.store_state``): what a run re-queued
        after its worker died resumes from (``runs.recovery``)."""
        self.state["usage"] = asdict(self.usage)
        retry_when_disconnected(lambda: self.run.store_state(self.state), what="a checkpoint")
        release_connection()

    def end_step(self, *, settled: bool) -> None:
        """``finish-step`` after the step's calls went as far as they go now; their
        outcomes in, the checkpoint no longer holds calls to resume (a later crash must
        not report them twice)."""
        self.state["step_open"] = False
        if settled:
            self.checkpoint()
        self.writer.emit(ev.FINISH_STEP)
        self.parts.step_open = False

    def checked_output(self, reply: str) -> TurnEnd:
        """A finished reply: succeeded, unless the client asked for a strict JSON schema
        and the last model call's ``reply`` does not validate (``invalid_output``: never a
        silent pass; text before the turn's tool calls is not the answer)."""
        error = ClientSettings.from_dict(self.run.client_settings).output_error(reply)
        if error is not None:
            return TurnEnd(Run.Status.FAILED, "invalid_output", error)
        return TurnEnd(Run.Status.SUCCEEDED)

    def take(self, chunk: Chunk, step_text: list[str], streamed: dict[int, StreamedCall]) -> None:
        if chunk.text:
            first = self.run.first_token_at is None
            if not self.parts.text_open:
                if first:
                    self.run.first_token_at = timezone.now()
                self.writer.emit(ev.TEXT_START, id=self.run.text_part_id)
                self.parts.text_open = True
            step_text.append(chunk.text)
            self.state["text"] += chunk.text
            self.writer.emit(ev.TEXT_DELTA, id=self.run.text_part_id, delta=chunk.text)
            if first:  # stored after the first token is out: not on its way
                retry_when_disconnected(self.run.store_first_token_at, what="the first token's time")
                release_connection()
        for delta in chunk.tool_calls:
            call = streamed.get(delta.index)
            if call is None:
                self.close_text()  # the text part ends where the tool part begins
                call = streamed[delta.index] = StreamedCall(new_call_id(), delta.id, delta.name)
                self.writer.emit(ev.TOOL_INPUT_START, toolCallId=call.call_id, toolName=call.tool_name)
            call.take(delta)  # id and name again (harmless), and the next piece of the arguments
            if delta.arguments:
                self.writer.emit(ev.TOOL_INPUT_DELTA, toolCallId=call.call_id, inputTextDelta=delta.arguments)
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.prompt_tokens is not None or chunk.completion_tokens is not None:
            self.usage = Usage(
                prompt_tokens=_add(self.usage.prompt_tokens, chunk.prompt_tokens),
                completion_tokens=_add(self.usage.completion_tokens, chunk.completion_tokens),
            )

    def close_text(self) -> None:
        if self.parts.text_open:
            self.writer.emit(ev.TEXT_END, id=self.run.text_part_id)
            self.parts.text_open = False


def _add(total: int | None, more: int | None) -> int | None:
    if more is None:
        return total
    return (total or 0) + more


def execute_compaction(*, run: Run, writer: RunEventWriter, worker_id: str) -> None:
    """A compaction run (``POST sessions/{s}/compact``), claimed like a turn: ``start``, the
    summary as ``text-start``/``text-delta``/``text-end`` while the model writes it,
    ``data-compaction {data: {before_tokens, after_tokens, messages_compacted}}``, then
    ``finish`` (``finish_run``), the ``Compaction`` stored in the same transaction. With
    nothing to compact (the history is no longer than ``keep_last``) there is no text and
    ``messages_compacted`` is 0. A model failure ends the run ``failed`` (``error`` before
    ``finish``) and stores nothing; a stop ends it ``stopped``, the time limit ``failed``.
    Holds no database connection while the model writes."""
    watch = StopWatch(run, worker_id, writer)
    logged = read_run_log(run) if run.attempts > 1 else []  # re-queued before its first token
    emit_start(run, writer, logged)
    keep_last = run.state.get("keep_last", compaction.DEFAULT_KEEP_LAST)
    plan = compaction.plan_compaction(session=run.session, keep_last=keep_last)
    summary: list[str] = []
    parts = OpenParts(started=True)
    end = TurnEnd(Run.Status.SUCCEEDED)
    if plan.possible:
        if not any(event.type == ev.TEXT_START for event in logged):
            writer.emit(ev.TEXT_START, id=run.text_part_id)
        parts.text_open = True
        end = stream_summary(run, writer, plan, watch, summary)
    if end.status != Run.Status.SUCCEEDED:
        logger.warning("Compaction %s ended %s: %s", run.uuid, end.status, end.error_message)
        retried_end(
            writer,
            lambda: finish_run(
                run=run,
                writer=writer,
                worker_id=worker_id,
                status=end.status,
                error_code=end.error_code,
                error_message=end.error_message,
                text="",
                open_parts=parts,
            ),
        )
        return
    if parts.text_open:
        writer.emit(ev.TEXT_END, id=run.text_part_id)
        parts.text_open = False

    def store_and_finish() -> bool:
        with transaction.atomic():
            if plan.possible:
                stored = compaction.store_compaction(plan=plan, summary="".join(summary).strip(), run=run)
                data = compaction.compaction_data(stored)
            else:
                data = compaction.nothing_compacted(plan)
            last = [(ev.DATA_COMPACTION, {"data": data})]
            ended = finish_run(
                run=run, writer=writer, worker_id=worker_id, status=Run.Status.SUCCEEDED, text="", last_events=last
            )
            if not ended:
                transaction.set_rollback(True)  # the run was taken from this worker: its summary is not kept
            return ended

    retried_end(writer, store_and_finish)


def stream_summary(
    run: Run, writer: RunEventWriter, plan: compaction.CompactionPlan, watch: StopWatch, summary: list[str]
) -> TurnEnd:
    """The model's summary streamed as ``text-delta`` events into ``summary``; how it ended."""
    chunks = compaction.summary_stream(plan)
    release_connection()  # none is held while the model writes
    try:
        for chunk in chunks:
            watch.check_lease()  # a summary taken by another worker is not written twice
            if chunk.text:
                summary.append(chunk.text)
                writer.emit(ev.TEXT_DELTA, id=run.text_part_id, delta=chunk.text)
                if run.first_token_at is None:
                    # Stored once the first token is out: a worker lost after it is not re-queued
                    # (the sweeper fails the run) rather than written twice into the stream.
                    run.first_token_at = timezone.now()
                    retry_when_disconnected(run.store_first_token_at, what="the first token's time")
                    release_connection()
            if watch.should_stop():
                return TurnEnd(Run.Status.STOPPED)
            if watch.timed_out:
                return TurnEnd(Run.Status.FAILED, "run_timeout", "The run exceeded its time limit.")
    except ProviderError as exc:
        return TurnEnd(Run.Status.FAILED, exc.code, exc.message)
    return TurnEnd(Run.Status.SUCCEEDED)
