"""The turn loop: claim a run, then work in steps (one model call each) until the reply
is done, the run must wait on the outside world, or it is stopped or fails.

A run is a small state machine (queued → running → succeeded | failed | stopped, and
running ⇄ requires_action while a tool call waits for its answer). Status changes are
``Run.mark_*``; the end of a run is ``runs.services.end_run``, its pause
``runs.services.pause_run``. Whatever a later task needs to continue lives in
``Run.state`` (see ``Run``), so a paused run holds no worker thread: when its answers
are in, ``runs.continue_run`` claims it again and the loop goes on from that state.

One turn's stream: ``start``, then per model call ``start-step``, the text
(``text-start``/``text-delta``/``text-end``) and tool calls (``tool-input-start``,
``tool-input-delta``, ``tool-input-available``), ``finish-step``; after a pause the
answers (``tool-output-available`` / ``tool-output-error``) and the next step; last
``finish``, written by ``end_run``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat.files import ensure_text
from chat.models import Message
from genie.links import absolute_url
from runs import connections
from runs.compaction import DEFAULT_KEEP_LAST, compact_before_turn, compaction_data
from runs.context import PromptParts, count_usage, prompt_parts
from runs.events import OpenParts, RunEventWriter, read_run_log, release_connection
from runs.models import Run, ToolCall
from runs.options import ClientSettings, offered_client_tools, with_instructions
from runs.providers import Chunk, ProviderError, ProviderRequest, ToolCallDelta, ToolDefinition, get_provider
from runs.services import Usage, end_run, pause_run
from runs.tools import CallContext, OfferedTool, ToolError, get_tool, offered_tools

logger = logging.getLogger(__name__)

PAUSED = "paused"  # a step's outcome, not a run status: the run goes requires_action

# A provider's finish_reason (OpenAI's words) as the AI SDK's ``finish`` chunk says it.
AI_SDK_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def execute_run(run_id: int, *, worker_id: str | None = None) -> Run | None:
    """Execute a claimable run (queued, an answered pause, or a dead worker's) until it
    ends or pauses. Exits at once when the run is finished, paused and still waiting,
    or leased by another live worker (a redelivered task never does the work twice)."""
    worker_id = worker_id or worker_identity()
    claimed = claim_run(run_id, worker_id=worker_id)
    if claimed is None:
        return None
    run, writer = claimed
    try:
        turn = Turn(run=run, writer=writer, worker_id=worker_id)
        turn.settle(turn.drive())
    finally:
        writer.close()
    return run


def claim_run(run_id: int, *, worker_id: str) -> tuple[Run, RunEventWriter] | None:
    """Lease the run in PostgreSQL and open its event writer (ids continue the session's).

    A run stopped before any worker started it is ended here (``start``, ``abort``,
    ``finish``), once the runs before it in its session have ended.
    """
    with transaction.atomic():
        run = Run.objects.select_related("session__agent", "agent_message", "user_message").locked(run_id)
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
        writer = RunEventWriter.open(run, stored_seq=session.stored_seq)
        run.mark_started(lease_owner=worker_id, lease_until=now + timedelta(seconds=settings.GENIE_RUN_LEASE))
        Message.objects.filter(pk=run.agent_message_id).update(status=Message.Status.STREAMING, updated_at=now)
        return run, writer


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
            try:
                self.stopped = self.stopped or self.writer.stop_requested(fresh_for=settings.GENIE_STOP_POLL_INTERVAL)
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


@dataclass
class TurnEnd:
    """How a turn (or the part of it this task ran) ended: a final run status, or PAUSED."""

    status: str
    error_code: str = ""
    error_message: str = ""


@dataclass
class StreamedCall:
    """A tool call as the model streams it within one step."""

    call_id: str
    provider_call_id: str
    tool_name: str
    arguments: str = ""

    def take(self, delta: ToolCallDelta) -> None:
        self.provider_call_id = self.provider_call_id or delta.id
        self.tool_name = self.tool_name or delta.name
        self.arguments += delta.arguments

    def parse_input(self) -> tuple[dict[str, Any] | None, str | None]:
        """The call's input, or the reason it has none."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return None, "The tool call's arguments are not valid JSON."
        if not isinstance(value, dict):
            return None, "The tool call's arguments must be a JSON object."
        return value, None


class Turn:
    """One run as its worker executes it: the event writer, the stop watch, what is open
    in the stream, the usage so far, the tools on offer, and ``state`` (saved to
    ``Run.state`` at a pause)."""

    def __init__(self, *, run: Run, writer: RunEventWriter, worker_id: str) -> None:
        self.run = run
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
        self._offered: dict[str, OfferedTool] | None = None
        self._parts: PromptParts | None = None
        self.step_called_tools = False
        self.finish_reason: str | None = None  # the last model call's, as the provider said it
        self.action_expires_at = timezone.now() + timedelta(seconds=settings.GENIE_ACTION_TTL)

    @property
    def offered(self) -> dict[str, OfferedTool]:
        """The agent's tools as the model sees them (listed once per task: an MCP server
        is asked for its tools at most once a turn), then the client's own tools for this
        turn (client tools: a call waits for the client's result)."""
        if self._offered is None:
            agent = self.run.session.agent
            if get_provider(agent.provider).supports_tools:
                tools = [*offered_tools(agent.tools), *offered_client_tools(self.run.client_tools)]
                self._offered = {}
                for tool in tools:
                    self._offered.setdefault(tool.name, tool)  # the agent's own tool keeps its name
            else:
                self._offered = {}
        return self._offered

    # --- the turn --------------------------------------------------------------------

    def drive(self) -> TurnEnd:
        """Emit ``start`` (once per run, even after a crash and re-queue), settle the tool
        calls a paused run was waiting on, then call the model step by step."""
        self.emit_start()
        if self.state["steps"] == 0 and not self.state["calls"]:
            self.compact_if_needed()
        while True:
            if self.state["calls"] and not self.advance_calls():
                return TurnEnd(PAUSED)
            max_steps = self.run.session.agent.max_steps or settings.GENIE_MAX_STEPS
            if self.state["steps"] >= max_steps:
                return TurnEnd(
                    Run.Status.FAILED, "max_steps", f"The turn reached its limit of {max_steps} model calls."
                )
            end = self.step()
            if end is not None:
                return end
            if not self.step_called_tools:
                return self.checked_output()

    def checked_output(self) -> TurnEnd:
        """A finished reply: succeeded, unless the client asked for a strict JSON schema
        and the reply does not validate (``invalid_output``: never a silent pass)."""
        error = ClientSettings.from_dict(self.run.client_settings).output_error(self.state["text"])
        if error is not None:
            return TurnEnd(Run.Status.FAILED, "invalid_output", error)
        return TurnEnd(Run.Status.SUCCEEDED)

    def settle(self, end: TurnEnd) -> None:
        if end.status == PAUSED:
            self.state["usage"] = asdict(self.usage)
            pause_run(
                run=self.run,
                writer=self.writer,
                state=self.state,
                text=self.state["text"],
                worker_id=self.worker_id,
                expires_at=self.action_expires_at,
            )
            return
        if end.status == Run.Status.FAILED:
            logger.warning("Run %s failed: %s %s", self.run.uuid, end.error_code, end.error_message)
        end_run(
            run=self.run,
            status=end.status,
            error_code=end.error_code,
            error_message=end.error_message,
            text=self.state["text"],
            usage=self.usage,
            writer=self.writer,
            open_parts=self.parts,
            worker_id=self.worker_id,
            finish_metadata=self.finish_metadata(),
            finish_reason=self.ai_sdk_finish_reason() if end.status == Run.Status.SUCCEEDED else None,
        )

    def ai_sdk_finish_reason(self) -> str | None:
        """Why the last model call ended, in the AI SDK's words (``other`` for a reason it
        has no name for); None when the provider did not say."""
        if self.finish_reason is None:
            return None
        return AI_SDK_FINISH_REASONS.get(self.finish_reason, "other")

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
        metadata["context"] = {**usage, "last_compacted_at": _api_time(last) if last else None}
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
            # first token (tests/runs/test_recovery.py) failed its retry timing with the shared read.
            compaction = compact_before_turn(
                parts=turn_prompt_parts(self.run), session=session, provider=get_provider(session.agent.provider)
            )
        except ProviderError as exc:
            logger.warning("Run %s: automatic compaction failed: %s", self.run.uuid, exc.message)
            return
        finally:
            release_connection()
        if compaction is not None:
            self._parts = None  # the prompt now starts from the summary
            self.writer.emit("data-compaction", data=compaction_data(compaction))

    def prompt_parts(self) -> PromptParts:
        """The prompt's parts, read once per task: the history does not change during a
        turn (its own steps are in ``state["messages"]``)."""
        if self._parts is None:
            self._parts = turn_prompt_parts(self.run)
        return self._parts

    def emit_start(self) -> None:
        """``start``, once per run: a run claimed again (re-queued after a crash, or a
        continuation) finds it in its log, PostgreSQL or Redis, and sends no second one.
        The first claim checks nothing: the token path stays one Redis command."""
        if self.run.attempts > 1 and any(event.type == "start" for event in read_run_log(self.run)):
            return
        self.writer.emit("start", messageId=str(self.run.agent_message.uuid))

    # --- one step: one model call ----------------------------------------------------

    def step(self) -> TurnEnd | None:
        """One model call, streamed as events, then its tool calls taken as far as they
        go now (executed, or waiting for a person or the client). Transient provider
        failures before the step's first output are retried with backoff; after it, a
        failure ends the run ``failed`` and keeps the text so far. Returns None when the
        step completed."""
        self.state["steps"] += 1
        self.writer.emit("start-step")
        self.parts.step_open = True
        tools = tuple(tool.definition() for tool in self.offered.values())
        request = provider_request(self.run, self.state["messages"], tools, parts=self.prompt_parts())
        provider = get_provider(self.run.session.agent.provider)
        release_connection()  # none is held while the model streams
        streamed: dict[int, StreamedCall] = {}
        step_text: list[str] = []
        self.finish_reason = None
        attempt = 0
        while True:
            try:
                for chunk in provider.stream(request):
                    self.take(chunk, step_text, streamed)
                    if self.watch.should_stop():
                        return TurnEnd(Run.Status.STOPPED)
                    if self.watch.timed_out:
                        return TurnEnd(Run.Status.FAILED, "run_timeout", "The run exceeded its time limit.")
                break
            except ProviderError as exc:
                if exc.transient and not step_text and not streamed and attempt < settings.GENIE_PROVIDER_RETRIES:
                    attempt += 1
                    time.sleep(settings.GENIE_PROVIDER_RETRY_BACKOFF * 2 ** (attempt - 1))
                    if self.watch.should_stop():
                        return TurnEnd(Run.Status.STOPPED)
                    continue
                return TurnEnd(Run.Status.FAILED, exc.code, exc.message)
        self.close_text()
        self.record_calls([streamed[index] for index in sorted(streamed)], "".join(step_text))
        self.step_called_tools = bool(streamed)
        if self.state["calls"]:
            self.advance_calls()  # what can run now runs inside the step; what waits, waits
        self.writer.emit("finish-step")
        self.parts.step_open = False
        if self.watch.should_stop():
            return TurnEnd(Run.Status.STOPPED)
        return None

    def take(self, chunk: Chunk, step_text: list[str], streamed: dict[int, StreamedCall]) -> None:
        if chunk.text:
            first = self.run.first_token_at is None
            if not self.parts.text_open:
                if first:
                    self.run.first_token_at = timezone.now()
                self.writer.emit("text-start", id=self.run.text_part_id)
                self.parts.text_open = True
            step_text.append(chunk.text)
            self.state["text"] += chunk.text
            self.writer.emit("text-delta", id=self.run.text_part_id, delta=chunk.text)
            if first:  # stored after the first token is out: not on its way
                Run.objects.filter(pk=self.run.pk).update(first_token_at=self.run.first_token_at)
                release_connection()
        for delta in chunk.tool_calls:
            call = streamed.get(delta.index)
            if call is None:
                self.close_text()  # the text part ends where the tool part begins
                call = streamed[delta.index] = StreamedCall(new_call_id(), delta.id, delta.name)
                self.writer.emit("tool-input-start", toolCallId=call.call_id, toolName=call.tool_name)
            call.take(delta)  # id and name again (harmless), and the next piece of the arguments
            if delta.arguments:
                self.writer.emit("tool-input-delta", toolCallId=call.call_id, inputTextDelta=delta.arguments)
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.prompt_tokens is not None or chunk.completion_tokens is not None:
            self.usage = Usage(
                prompt_tokens=_add(self.usage.prompt_tokens, chunk.prompt_tokens),
                completion_tokens=_add(self.usage.completion_tokens, chunk.completion_tokens),
            )

    def close_text(self) -> None:
        if self.parts.text_open:
            self.writer.emit("text-end", id=self.run.text_part_id)
            self.parts.text_open = False

    # --- tool calls ------------------------------------------------------------------

    def record_calls(self, streamed: list[StreamedCall], step_text: str) -> None:
        """Each call's input is complete: store its ``ToolCall``, announce it
        (``tool-input-available``; ``tool-input-error`` for arguments that are not a JSON
        object), and fail at once what cannot run: invalid JSON, an unknown tool, an
        input its schema refuses (the model is told at the next step)."""
        for position, item in enumerate(streamed):
            arguments, error = item.parse_input()
            offered = self.offered.get(item.tool_name)
            call = ToolCall.objects.create(
                run=self.run,
                call_id=item.call_id,
                provider_call_id=item.provider_call_id,
                step=self.state["steps"],
                position=position,
                tool_name=item.tool_name,
                kind=offered.spec.kind if offered else "",
                arguments=item.arguments,
                input=arguments,
            )
            if error is not None:
                self.writer.emit(
                    "tool-input-error",
                    toolCallId=call.call_id,
                    toolName=call.tool_name,
                    input=item.arguments,
                    errorText=error,
                )
                call.mark_failed(error)
                self.state["reported"].append(call.call_id)
                continue
            self.writer.emit("tool-input-available", toolCallId=call.call_id, toolName=call.tool_name, input=arguments)
            if offered is None:
                call.mark_failed(f"There is no tool named {call.tool_name!r}.")
            elif (invalid := offered.input_error(arguments)) is not None:
                call.mark_failed(invalid)
        if streamed:
            self.state["messages"].append(
                {
                    "role": "assistant",
                    "content": step_text or None,
                    "tool_calls": [
                        {
                            "id": item.provider_call_id or item.call_id,
                            "type": "function",
                            "function": {"name": item.tool_name, "arguments": item.arguments},
                        }
                        for item in streamed
                    ],
                }
            )
        self.state["calls"] = [item.call_id for item in streamed]

    def advance_calls(self) -> bool:
        """Take each of the step's calls as far as it goes now; report the outcomes. When
        every call is settled, their results go to the model's next step: returns True;
        False while any waits for a person or the client."""
        calls = list(
            ToolCall.objects.filter(call_id__in=self.state["calls"])
            .select_related("connection_attempt__provider")
            .order_by("position")
        )
        for call in calls:
            self.report_decision(call)
            self.report_connection(call)
            self.advance(call)
            self.report(call)
        if any(call.is_open for call in calls):
            return False
        for call in calls:
            self.state["messages"].append(
                {"role": "tool", "tool_call_id": call.provider_call_id or call.call_id, "content": tool_result(call)}
            )
        self.state["calls"] = []
        return True

    def advance(self, call: ToolCall) -> None:
        if call.status != ToolCall.Status.RUNNING:
            return  # settled, or still waiting
        offered = self.offered.get(call.tool_name)
        if offered is None:
            call.mark_failed(f"The tool {call.tool_name!r} is no longer offered.")
        elif offered.spec.requires_approval and not call.decided_by:
            call.mark_waiting(ToolCall.Status.PENDING_APPROVAL)
            self.writer.emit("tool-approval-request", approvalId=call.call_id, toolCallId=call.call_id)
            self.writer.emit("data-approval-required", data=self.action_data(call, "approval"))
        elif not get_tool(offered.spec.kind).runs_on_server:
            call.mark_waiting(ToolCall.Status.AWAITING_RESULT)
            self.writer.emit("data-client-tool-call", data=self.action_data(call, "result"))
        elif offered.spec.connection:
            self.execute_connected(call, offered)
        else:
            self.execute(call, offered)

    def execute_connected(self, call: ToolCall, offered: OfferedTool) -> None:
        """A tool with a connection runs with its end user's token (refreshed when it
        expired); without a usable one the call waits for the user to authorize the
        provider (``data-connection-auth-required``) and the run pauses."""
        slug = offered.spec.connection or ""
        session = self.run.session
        user_id = connections.end_user_of(session)
        try:
            token = connections.connection_token(team_id=session.team_id, slug=slug, user_id=user_id)
        except connections.ConnectionUnavailable as exc:
            call.mark_failed(exc.message)
            return
        if token is not None:
            self.execute(call, offered, access_token=token)
            return
        attempt, link = connections.request_connection(
            call=call, slug=slug, user_id=user_id, expires_at=self.action_expires_at
        )
        self.writer.emit(
            "data-connection-auth-required",
            data={
                "attempt_id": str(attempt.attempt_id),
                "provider": slug,
                "call_id": call.call_id,
                "auth_link": {"url": link.url, "expires_at": _api_time(link.expires_at)},
                "link_url": absolute_url(None, "runs:connection-link", attempt_id=attempt.attempt_id),
                "reject_url": absolute_url(None, "runs:connection-reject", attempt_id=attempt.attempt_id),
            },
        )

    def execute(self, call: ToolCall, offered: OfferedTool, *, access_token: str | None = None) -> None:
        """Run a server-side tool once, ever: a call a dead attempt had started is failed,
        not run again."""
        if not call.claim_execution():
            call.mark_failed("The call was interrupted (its worker stopped); it was not run again.")
            return
        # The lease covers the call's whole timeout: a slow tool is not a dead worker.
        Run.objects.filter(pk=self.run.pk, lease_owner=self.worker_id).update(
            lease_expires_at=timezone.now() + timedelta(seconds=offered.spec.timeout + settings.GENIE_RUN_LEASE)
        )
        session = self.run.session
        context = CallContext(
            call_id=call.call_id,
            session_uuid=str(session.uuid),
            run_uuid=str(self.run.uuid),
            # Whom the session's creator vouches for (a browser's user_id is not proof): the
            # same end user connections act for.
            user_id=connections.end_user_of(session),
            webhook_secret=session.agent.webhook_secret,
            access_token=access_token,
        )
        release_connection()
        try:
            output = get_tool(offered.spec.kind).call(offered, call.input or {}, context)
        except ToolError as exc:
            call.mark_failed(exc.message)
        except Exception:  # a bug in a tool: the model's tool error, not a turn retried and lost
            logger.exception("Tool %s of run %s raised", call.tool_name, self.run.uuid)
            call.mark_failed("The tool failed unexpectedly.")
        else:
            call.mark_succeeded(output)

    def report_decision(self, call: ToolCall) -> None:
        """A person's decision on a call, in the stream once (``tool-approval-response``:
        the AI SDK records it on the tool part, and requires it before the outcome)."""
        if not call.decided_by or call.call_id in self.state["decided"]:
            return
        fields: dict[str, Any] = {"approvalId": call.call_id, "approved": call.status != ToolCall.Status.DENIED}
        if call.reason:
            fields["reason"] = call.reason
        self.writer.emit("tool-approval-response", **fields)
        self.state["decided"].append(call.call_id)

    def report_connection(self, call: ToolCall) -> None:
        """The end user's authorization that released a call, in the stream once per run
        (``data-connection-auth-success``): the callback only stores it, this worker is
        the run's one event writer."""
        if call.connection_attempt_id is None:
            return
        attempt = call.connection_attempt
        attempt_id = str(attempt.attempt_id)
        if attempt.status != attempt.Status.AUTHORIZED or attempt_id in self.state["connected"]:
            return
        self.writer.emit(
            "data-connection-auth-success", data={"attempt_id": attempt_id, "provider": attempt.provider.slug}
        )
        self.state["connected"].append(attempt_id)

    def report(self, call: ToolCall) -> None:
        """A settled call's outcome in the stream, once."""
        if not call.is_settled or call.call_id in self.state["reported"]:
            return
        if call.status == ToolCall.Status.SUCCEEDED:
            self.writer.emit("tool-output-available", toolCallId=call.call_id, output=call.output)
        elif call.status == ToolCall.Status.DENIED:
            self.writer.emit("tool-output-denied", toolCallId=call.call_id)
        else:
            self.writer.emit("tool-output-error", toolCallId=call.call_id, errorText=call.error or call.status)
        self.state["reported"].append(call.call_id)

    def action_data(self, call: ToolCall, action: str) -> dict[str, Any]:
        url = absolute_url(None, f"runs:tool-call-{action}", session_uuid=self.run.session.uuid, call_id=call.call_id)
        data = {"call_id": call.call_id, "tool_name": call.tool_name, "input": call.input}
        if action == "approval":
            return {**data, "approval_url": url, "expires_at": _api_time(self.action_expires_at)}
        return {**data, "result_url": url}


def tool_result(call: ToolCall) -> str:
    """A settled call as the model reads it in the ``tool`` message."""
    if call.status == ToolCall.Status.SUCCEEDED:
        return json.dumps(call.output)
    if call.status == ToolCall.Status.DENIED:
        reason = f" Reason: {call.reason}" if call.reason else ""
        return json.dumps({"error": f"The user denied this tool call.{reason}"})
    return json.dumps({"error": call.error or call.status})


def _api_time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")  # as the API writes times


def _add(total: int | None, more: int | None) -> int | None:
    if more is None:
        return total
    return (total or 0) + more
