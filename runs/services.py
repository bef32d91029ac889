"""Writes for runs: queue a turn, stop a session's runs, answer a paused run, and the one
place a run ends (``_close_run``: the worker's ``finish_run``, a bystander's ``end_run``)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from chat.models import Message, Session
from genie.connections import redis_client
from runs import tasks
from runs import vocabulary as ev
from runs.events import OpenParts, RunEventWriter, StreamEvent, logged_text, read_run_log, stop_key
from runs.exceptions import ActionAlreadyAnswered, RunActive
from runs.metrics import record_run_end
from runs.models import ConnectionAttempt, Run, ToolCall
from runs.options import TurnOptions

logger = logging.getLogger(__name__)

ON_ACTIVE_RUN_CHOICES = ("reject", "enqueue", "interrupt")

MESSAGE_STATUS = {
    Run.Status.SUCCEEDED: Message.Status.COMPLETE,
    Run.Status.FAILED: Message.Status.FAILED,
    Run.Status.STOPPED: Message.Status.STOPPED,
}
STOPPED_ERROR = {"code": "stopped", "message": "The reply was stopped before it was complete."}


def message_error(status: str, error_code: str, error_message: str) -> dict[str, str] | None:
    """What a reply's ``error`` keeps of how its run ended: ``{code, message}`` for a failed
    or stopped run, None for one that succeeded."""
    if status == Run.Status.FAILED:
        return {"code": error_code or "failed", "message": error_message or "The reply failed."}
    if status == Run.Status.STOPPED:
        return dict(STOPPED_ERROR)
    return None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Turn:
    """A started turn (``chat.services.start_turn``), as every entry answers it
    (``runs.handoff.answer_turn``).

    ``client_secret``: a publishable key's new session's secret, shown once (a replay has
    none: it is kept nowhere). ``replayed``: the turn an earlier request with the same
    ``Idempotency-Key`` started. ``stored_before``: the session's last stored event id
    before a fresh turn (its stream is read from Redis after it); ``after_seq``: where a
    continued turn's stream goes on."""

    session: Session
    run: Run
    client_secret: str | None = None
    replayed: bool = False
    stored_before: int | None = None
    after_seq: int | None = None


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


def queue_run(*, session: Session, user_message: Message, options: TurnOptions | None = None) -> Run:
    """A pending agent message and a queued run (with what the client asked of it:
    ``options``); the task is enqueued after commit. A ``user_message`` not stored yet is
    stored with the agent message, in one INSERT (a new turn's way to its first token)."""
    agent = session.agent
    agent_message = Message(
        session=session,
        sender_role=Message.SenderRole.AGENT,
        status=Message.Status.PENDING,
        provider=agent.provider,
        model_id=agent.model,
        temperature=agent.temperature,
        metadata=user_message.metadata,
    )
    # In this order, so the user message's id and created_at come first, as the transcript reads them.
    Message.objects.bulk_create([user_message, agent_message] if user_message._state.adding else [agent_message])
    run = Run.objects.create(
        session=session,
        user_message=user_message,
        agent_message=agent_message,
        **(options or TurnOptions()).run_fields(),
    )
    transaction.on_commit(partial(tasks.execute_run.delay, run.pk))
    return run


def queue_compaction(*, session: Session, keep_last: int) -> Run:
    """A queued compaction run of ``session`` (its summary of all but the last
    ``keep_last`` messages, written by the worker: ``runs.loop.execute_compaction``); the
    task is enqueued after commit, as a turn's."""
    run = Run.objects.create(session=session, kind=Run.Kind.COMPACTION, state={"keep_last": keep_last})
    transaction.on_commit(partial(tasks.execute_run.delay, run.pk))
    return run


def finish_run(
    *,
    run: Run,
    writer: RunEventWriter,
    worker_id: str,
    status: str,
    error_code: str = "",
    error_message: str = "",
    text: str,
    usage: Usage | None = None,
    open_parts: OpenParts | None = None,
    finish_metadata: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    last_events: list[tuple[str, dict[str, Any]]] | None = None,
) -> bool:
    """The executing worker ends its run as ``status`` (succeeded, failed or stopped), while
    it still holds the lease: with its own ``writer`` (whose ids it owns), what it left
    open in the stream, the reply's ``text`` and ``usage``. ``finish_metadata`` (usage and
    context) goes out as the ``finish`` chunk's ``messageMetadata``, ``finish_reason`` (the
    AI SDK's words: ``stop``, ``length``, …) as its ``finishReason``: a succeeded run whose
    reply was cut by the token cap (``length``) leaves its message ``incomplete``, not
    ``complete``. ``last_events`` go out just before the ``finish``, stored and published
    with it (a compaction's ``data-compaction``). See ``_close_run`` for what ending
    writes. Returns False, changing nothing, when the run had already ended or was taken
    from this worker."""
    with transaction.atomic():
        locked = Run.objects.locked(run.pk)
        if locked is None or locked.is_finished:
            return False
        if locked.status != Run.Status.RUNNING or locked.lease_owner != worker_id:
            logger.warning("Run %s is no longer leased by %s; not ending it", run.uuid, worker_id)
            return False
        _close_run(
            run=run,
            locked=locked,
            writer=writer,
            own_writer=False,
            status=status,
            error_code=error_code,
            error_message=error_message,
            text=text,
            usage=usage,
            open_parts=open_parts or OpenParts(started=True),
            finish_metadata=finish_metadata,
            finish_reason=finish_reason,
            last_events=last_events,
        )
    return True


def end_run(
    *,
    run: Run,
    status: str,
    error_code: str = "",
    error_message: str = "",
    text: str | None = None,
    usage: Usage | None = None,
    reply: str | None = None,
    finish_reason: str | None = None,
) -> bool:
    """A bystander ends ``run`` as ``status``: stop, the sweeper, a claim that finds the run
    stopped before it started. No worker holds it (or its worker is gone), so the session
    row is locked for the event ids, and what is open in the stream and the reply so far
    (unless ``text`` is given) are read from the run's log, PostgreSQL and Redis: the text
    its clients saw. ``reply``: the whole reply its dead worker noted; what of it clients
    have not seen yet goes out as a last ``text-delta``. See ``_close_run`` for what ending
    writes. Returns False, changing nothing, when the run had already ended. Locks the run
    and session rows; queries: about six."""
    with transaction.atomic():
        locked = Run.objects.locked(run.pk)
        if locked is None or locked.is_finished:
            return False
        Session.objects.select_for_update().filter(pk=run.session_id).first()  # serialise event ids
        writer = RunEventWriter.open(run)
        log = read_run_log(run, store_unflushed=True)
        open_parts = OpenParts.of([event.type for event in log])
        if text is None and open_parts.started:
            text = logged_text(log)
        tail = ""
        if reply and open_parts.text_open and reply.startswith(text or "") and len(reply) > len(text or ""):
            tail, text = reply[len(text or "") :], reply
        _close_run(
            run=run,
            locked=locked,
            writer=writer,
            own_writer=True,
            status=status,
            error_code=error_code,
            error_message=error_message,
            text=text,
            usage=usage,
            open_parts=open_parts,
            finish_reason=finish_reason,
            tail=tail,
        )
    return True


def _close_run(
    *,
    run: Run,
    locked: Run,
    writer: RunEventWriter,
    own_writer: bool,
    status: str,
    error_code: str,
    error_message: str,
    text: str | None,
    usage: Usage | None,
    open_parts: OpenParts,
    finish_metadata: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    tail: str = "",
    last_events: list[tuple[str, dict[str, Any]]] | None = None,
) -> None:
    """The one way a run ends (``finish_run``, ``end_run``), inside their transaction with
    the run row ``locked``: the closing events (``start`` if none went out, ``text-end`` and
    ``finish-step`` for what is open, ``error`` or ``abort``, then ``finish``) are stored,
    the agent message gets its text, status, error and usage, open tool calls and the connection
    attempts only they waited on expire, the run gets its final status. After commit: the
    events are published (a client that reads the transcript after ``finish`` sees the
    whole text), the session's next queued run is enqueued, a title is written for a
    blank-titled session, and the run's stop flag is cleared."""
    calls = list(run.tool_calls.all())
    # A call still running when a bystander ends the run lost its worker: it is not run
    # again, and the model's transcript and the client are told so.
    interrupted = [call for call in calls if call.status == ToolCall.Status.RUNNING]
    for call in interrupted:
        call.mark_outcome_unknown()
    outputs = [(ev.TOOL_OUTPUT_ERROR, {"toolCallId": call.call_id, "errorText": call.error}) for call in interrupted]
    outputs += last_events or []
    recorded = [
        writer.record(type_, **fields)
        for type_, fields in closing_events(
            run,
            status,
            error_message,
            open_parts,
            finish_metadata=finish_metadata,
            finish_reason=finish_reason,
            outputs=outputs,
            tail=tail,
        )
    ]
    writer.flush()
    if run.agent_message_id is not None:  # a compaction has no message: its summary is a Compaction
        _end_message(run.agent_message, status, error_code, error_message, text, usage, finish_reason)
    for call in calls:
        if call.is_open:  # nobody will answer it now
            call.mark_expired()
    if calls:  # only a tool call can have asked for a connection (most turns call none)
        ConnectionAttempt.objects.unwaited_after(run).expire()
    usage = usage or Usage()
    locked.mark_finished(
        status=status,
        error_code=error_code,
        error_message=error_message,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )
    for name in (
        "status",
        "error_code",
        "error_message",
        "first_token_at",
        "finished_at",
        "lease_owner",
        "lease_expires_at",
    ):
        setattr(run, name, getattr(locked, name))
    transaction.on_commit(partial(_after_run_end, run=run, writer=writer, events=recorded, close=own_writer))


def _end_message(
    message: Message,
    status: str,
    error_code: str,
    error_message: str,
    text: str | None,
    usage: Usage | None,
    finish_reason: str | None,
) -> None:
    """The agent message of a run that ends: its status, error, text and usage."""
    message.status = MESSAGE_STATUS[status]
    if status == Run.Status.SUCCEEDED and finish_reason == "length":
        message.status = Message.Status.INCOMPLETE
    message.error = message_error(status, error_code, error_message)
    fields = ["status", "error", "updated_at"]
    if text is not None:
        message.text = text
        fields.append("text")
    if usage is not None:
        message.prompt_tokens, message.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        fields += ["prompt_tokens", "completion_tokens"]
    message.save(update_fields=fields)


def closing_events(
    run: Run,
    status: str,
    error_message: str,
    parts: OpenParts,
    *,
    finish_metadata: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    outputs: list[tuple[str, dict[str, Any]]] | None = None,
    tail: str = "",
) -> list[tuple[str, dict[str, Any]]]:
    """The events that close a run's stream, in the order the AI SDK expects; ``outputs``:
    the outcomes of tool calls the run ends (``tool-output-error``), in its open step;
    ``tail``: the open text's last piece, which no client saw yet."""
    events: list[tuple[str, dict[str, Any]]] = []
    if not parts.started:
        events.append((ev.START, run.start_fields))
    if tail and parts.text_open:
        events.append((ev.TEXT_DELTA, {"id": run.text_part_id, "delta": tail}))
    if parts.text_open:
        events.append((ev.TEXT_END, {"id": run.text_part_id}))
    events += outputs or []
    if status == Run.Status.FAILED:
        events.append((ev.ERROR, {"errorText": error_message}))
    elif status == Run.Status.STOPPED:
        events.append((ev.ABORT, {}))
    if parts.step_open:
        events.append((ev.FINISH_STEP, {}))
    finish: dict[str, Any] = {"finishReason": finish_reason} if finish_reason else {}
    if finish_metadata:
        finish["messageMetadata"] = finish_metadata
    events.append((ev.FINISH, finish))
    return events


def _after_run_end(*, run: Run, writer: RunEventWriter, events: list[StreamEvent], close: bool) -> None:
    for event in events:  # stored first, published after commit
        writer.publish(event)
    writer.read_replies()  # the end is in the Stream before the session's next run starts
    if close:
        writer.close()
    enqueue_next_run(session_id=run.session_id)
    if not run.is_compaction:  # a compaction is no reply: neither a turn's figures nor a title's cue
        record_run_end(run)
        if (
            run.status == Run.Status.SUCCEEDED
            and settings.GENIE_GENERATE_TITLES
            and not run.session.title
            and run.session.agent.generate_titles
        ):
            tasks.generate_title.delay(run.session_id)
    with contextlib.suppress(redis.RedisError):
        redis_client().delete(stop_key(str(run.uuid)))


def pause_run(
    *, run: Run, writer: RunEventWriter, state: dict[str, Any], text: str, worker_id: str, expires_at: datetime
) -> bool:
    """The executing worker gives a run up until its pending tool calls are answered:
    the run waits ``requires_action`` (no lease, no worker thread) until ``expires_at``,
    its message keeps the text so far, its events are stored. A stop that arrived while
    the worker was finishing the step ends the run ``stopped`` instead. Returns whether
    the run now waits."""
    with transaction.atomic():
        locked = Run.objects.locked(run.pk)
        if locked is None or locked.status != Run.Status.RUNNING or locked.lease_owner != worker_id:
            return False
        if locked.stop_requested_at is None:
            writer.flush()
            run.agent_message.keep_text(text)
            locked.mark_waiting(state=state, expires_at=expires_at)
            run.status, run.state = locked.status, locked.state
            # An answer that came in after the worker last looked found the run still
            # running and enqueued nothing: the run must not wait for the sweeper.
            continue_when_answered(locked)
            return True
    finish_run(
        run=run,
        writer=writer,
        worker_id=worker_id,
        status=Run.Status.STOPPED,
        text=text,
        open_parts=OpenParts(started=True),
    )
    return False


def decide_tool_call(*, session: Session, call_id: str, approved: bool, reason: str, decided_by: str) -> ToolCall:
    """Approve or deny a tool call waiting for a person. When no call of the run waits
    any more, its continuation is enqueued after commit. Raises ``ToolCall.DoesNotExist``
    (no such call in this session) or ``ActionAlreadyAnswered``."""
    with transaction.atomic():
        call = _locked_call(session=session, call_id=call_id)
        if call.status != ToolCall.Status.PENDING_APPROVAL:
            raise ActionAlreadyAnswered(details={"call_id": call_id, "status": call.status})
        if approved:
            call.mark_approved(decided_by=decided_by, reason=reason)
        else:
            call.mark_denied(decided_by=decided_by, reason=reason)
        continue_when_answered(call.run)
    return call


def submit_tool_result(*, session: Session, call_id: str, output: Any = None, error: str | None = None) -> ToolCall:
    """The client's result of a client tool call (``output``, or ``error``); for a UI
    command (``call.is_ui_command``: its turn went on) it is recorded on the call, however
    often. Raises ``ToolCall.DoesNotExist`` or ``ActionAlreadyAnswered`` (not waiting for a
    result)."""
    with transaction.atomic():
        call = _locked_call(session=session, call_id=call_id)
        if call.is_ui_command:
            call.record_result(output=output, error=error)
            return call
        if call.status != ToolCall.Status.AWAITING_RESULT:
            raise ActionAlreadyAnswered(
                "This tool call is not waiting for a result.", details={"call_id": call_id, "status": call.status}
            )
        if error is not None:
            call.mark_failed(error)
        else:
            call.mark_succeeded(output)
        continue_when_answered(call.run)
    return call


@dataclass(frozen=True)
class ToolAnswer:
    """A client's answer to one tool call: a decision (``approved`` with its ``reason``),
    or a client tool's result (``output``, or ``error`` when it failed)."""

    call_id: str
    approved: bool | None = None
    reason: str = ""
    output: Any = None
    error: str | None = None


def apply_answers(*, run: Run, answers: list[ToolAnswer], decided_by: str, options: TurnOptions | None = None) -> None:
    """Each answer to a call of ``run`` through the one service for it
    (``decide_tool_call``, ``submit_tool_result``), all or none. An answer the call
    already has is skipped (a client may send it again); a different decision is 409
    ``already_decided``; a call the run never made raises ``ToolCall.DoesNotExist``.
    ``options``: what the answering request asks of the run's next model calls (an
    OpenAI-style client sends its instructions, settings and tools with every request,
    and an Agents SDK handoff changes them): they replace the run's."""
    session = run.session
    with transaction.atomic():
        if options is not None and (locked := Run.objects.locked(run.pk)) is not None:
            locked.client_settings = options.settings.as_dict()
            locked.client_tools = [tool.as_dict() for tool in options.tools]
            locked.save(update_fields=["client_settings", "client_tools", "updated_at"])
        calls = {call.call_id: call for call in run.tool_calls.filter(call_id__in=[a.call_id for a in answers])}
        for answer in answers:
            if answer.call_id not in calls:
                raise ToolCall.DoesNotExist(answer.call_id)
            call = calls[answer.call_id]
            if answer.approved is not None:
                if call.status == ToolCall.Status.PENDING_APPROVAL:
                    decide_tool_call(
                        session=session,
                        call_id=answer.call_id,
                        approved=answer.approved,
                        reason=answer.reason,
                        decided_by=decided_by,
                    )
                elif not call.decided_by or (call.status == ToolCall.Status.DENIED) == answer.approved:
                    raise ActionAlreadyAnswered(details={"call_id": answer.call_id, "status": call.status})
            elif call.status == ToolCall.Status.AWAITING_RESULT:
                submit_tool_result(session=session, call_id=answer.call_id, output=answer.output, error=answer.error)


def _locked_call(*, session: Session, call_id: str) -> ToolCall:
    """The call, with its run's row locked: answers to one run are serialised."""
    call = ToolCall.objects.select_related("run").get(run__session=session, call_id=call_id)
    Run.objects.locked(call.run_id)
    call.refresh_from_db()
    return call


def continue_when_answered(run: Run) -> None:
    if run.status == Run.Status.REQUIRES_ACTION and not run.tool_calls.open().exists():
        transaction.on_commit(partial(tasks.continue_run.delay, run.pk))


def stop_session(*, session: Session) -> list[Run]:
    """Ask the session's active runs to stop (the running one and any queued behind it).

    A run no worker holds (queued with nothing running before it, or paused) is ended here
    with ``abort`` + ``finish``; a running one is flagged in PostgreSQL and Redis and its
    worker stops within a poll interval. Queued runs behind a running one are flagged:
    the running run's end hands each on in turn, and each ends ``stopped`` at once
    (its event ids follow the running run's, which only its worker may hand out).
    Returns the runs asked to stop, oldest first (empty: nothing was active); a running
    one may still end otherwise (its worker was ending it: ``runs.waiting.stop_and_wait``
    tells). Stopping twice is harmless.
    """
    with transaction.atomic():
        runs = list(
            session.runs.active()
            .select_for_update(of=("self",))
            .select_related("agent_message", "session")
            .order_by("created_at", "id")
        )
        running = any(run.status == Run.Status.RUNNING for run in runs)
        for run in runs:
            run.mark_stop_requested()
        for run in runs:
            if run.status == Run.Status.REQUIRES_ACTION or (run.status == Run.Status.QUEUED and not running):
                end_run(run=run, status=Run.Status.STOPPED)
        transaction.on_commit(partial(_signal_stop, runs=[run for run in runs if run.status == Run.Status.RUNNING]))
    return runs


def _signal_stop(*, runs: list[Run]) -> None:
    for run in runs:
        with contextlib.suppress(redis.RedisError):  # the worker falls back to stop_requested_at
            redis_client().set(stop_key(str(run.uuid)), 1, ex=3600)


def forget_session(*, session_id: int) -> bool:
    """Delete a session kept only for its run's sake (a Responses API request with
    ``store: false``) once no run of it is queued or running: a paused run is stopped
    first (nobody will answer it: such a client sends its conversation again), then the
    session goes with its messages, runs, tool calls, events and files. Returns False,
    deleting nothing, while a run still works. The session's Redis stream expires on its
    own (GENIE_STREAM_TTL): a reader may still be relaying its end."""
    session = Session.objects.filter(pk=session_id).first()
    if session is None:
        return True
    if session.runs.filter(status__in=(Run.Status.QUEUED, Run.Status.RUNNING)).exists():
        return False
    stop_session(session=session)
    session.delete()
    return True


def forget_session_when_idle(*, session: Session) -> None:
    """``forget_session`` once its runs are done (a task after commit that looks again
    every second while a run works)."""
    transaction.on_commit(partial(tasks.forget_session.delay, session.pk))
