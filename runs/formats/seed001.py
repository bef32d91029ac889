"""Seed 001's stream (the headless "genies" API): SSE with named events.

``id: <seq>``, ``event: <name>``, ``data: <json>``; every event's data has ``created_at``
(when it was stored, ISO 8601 UTC), and every SSE event its own id (``frame_ids``). The names are the document's
(``skill.confirmation_required``, ``runtime_connection.auth_required``,
``runtime_connection.auth_success``, ``agent.message``, ``processing.finished``) plus
Genie's own where the document is silent (``processing.started`` first, naming the run;
``agent.message.delta`` per token; the skill's outcome; ``processing.error``). Every
event's data names its ``genie_run_id``. ``agent.message`` holds the whole reply, so a
run's stream is read from the run's start even on a resume (``reads_whole_run``).

``seed001_events`` is the one mapping from the event log to these events: the stream and
the events endpoint (``protocols.seed001.views``) both use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runs import vocabulary as ev
from runs.events import StreamEvent
from runs.formats.base import StreamFormat
from runs.models import Run

SeedEvent = tuple[str, dict[str, Any]]


@dataclass
class Reply:
    """What seed 001's closing events say of a run: its agent message and how it ended.
    The stream learns it from the events it reads; the events endpoint from the run row."""

    message_id: str = ""
    text: str = ""
    status: str = Run.Status.SUCCEEDED

    def read(self, chunk: dict[str, Any]) -> None:
        kind = chunk.get("type")
        if kind == ev.START:
            self.message_id = chunk.get("messageId", "")
        elif kind == ev.TEXT_DELTA:
            self.text += chunk.get("delta", "")
        elif kind == ev.ERROR:
            self.status = Run.Status.FAILED
        elif kind == ev.ABORT:
            self.status = Run.Status.STOPPED


def _from_data(**names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Fields of seed 001's event from a Genie ``data-*`` part's ``data`` (seed name=Genie name)."""
    return lambda chunk: {seed: (chunk.get("data") or {}).get(genie) for seed, genie in names.items()}


def _from_chunk(**names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Fields of seed 001's event from an AI SDK chunk's own fields."""
    return lambda chunk: {seed: chunk.get(genie) for seed, genie in names.items()}


# Events whose data is the chunk's alone (no reply state), by the chunk's type.
NAMED: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    ev.TOOL_INPUT_AVAILABLE: ("skill.called", _from_chunk(call_id="toolCallId", skill_name="toolName", input="input")),
    ev.DATA_APPROVAL_REQUIRED: (
        "skill.confirmation_required",
        _from_data(call_id="call_id", skill_name="tool_name", input="input", expires_at="expires_at"),
    ),
    ev.TOOL_APPROVAL_RESPONSE: ("skill.confirmation_resolved", _from_chunk(call_id="approvalId", approved="approved")),
    ev.TOOL_OUTPUT_AVAILABLE: ("skill.completed", _from_chunk(call_id="toolCallId", output="output")),
    ev.TOOL_OUTPUT_ERROR: ("skill.failed", _from_chunk(call_id="toolCallId", error="errorText")),
    ev.TOOL_OUTPUT_DENIED: ("skill.rejected", _from_chunk(call_id="toolCallId")),
    ev.DATA_CONNECTION_AUTH_REQUIRED: (
        "runtime_connection.auth_required",
        _from_data(
            runtime_connection_attempt_id="attempt_id", auth_link="auth_link", provider="provider", call_id="call_id"
        ),
    ),
    ev.DATA_CONNECTION_AUTH_SUCCESS: (
        "runtime_connection.auth_success",
        _from_data(runtime_connection_attempt_id="attempt_id", provider="provider"),
    ),
    ev.ERROR: ("processing.error", _from_chunk(message="errorText")),
}


def seed001_events(chunk: dict[str, Any], *, genie_run_id: str, reply: Reply) -> list[SeedEvent]:
    """The seed 001 events for one stored chunk (none for the AI SDK's bookkeeping:
    steps, text parts, tool input deltas). ``reply`` is what is known of the run's reply
    (``agent.message`` at the finish holds all of it)."""
    run = {"genie_run_id": genie_run_id}
    kind = chunk.get("type", "")
    if kind == ev.START:
        return [("processing.started", {**run, "message_id": reply.message_id})]
    if kind == ev.TEXT_DELTA:
        return [("agent.message.delta", {**run, "message_id": reply.message_id, "delta": chunk.get("delta", "")})]
    if kind == ev.FINISH:
        closing = [("processing.finished", {**run, "status": reply.status})]
        if reply.text or reply.status == Run.Status.SUCCEEDED:
            closing.insert(0, ("agent.message", {**run, "message_id": reply.message_id, "text": reply.text}))
        return closing
    if kind in NAMED:
        name, fields = NAMED[kind]
        return [(name, {**run, **fields(chunk)})]
    return []


def frame_ids(seq: int, count: int) -> list[str]:
    """The SSE ids of the ``count`` frames of event ``seq``: the last is ``<seq>``, those
    before it ``<seq>.0``, ``<seq>.1``… (``finish`` is both ``agent.message`` and
    ``processing.finished``), so every frame has its own id and a client resuming from any
    of them gets exactly what follows."""
    return [f"{seq}.{index}" for index in range(count - 1)] + [str(seq)]


class Seed001Format(StreamFormat):
    name = "seed001"
    reads_whole_run = True

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}  # by run: a session stream may cover several
        self.resume_within: tuple[int, int] = (0, 0)  # (seq, frames of it the client has)

    def resume_from_frame(self, seq: int, frames: int) -> None:
        self.resume_within = (seq, frames)

    def frame(self, event: StreamEvent) -> str:
        chunk = json.loads(event.data_json)
        reply = self.replies.setdefault(event.run_uuid, Reply())
        reply.read(chunk)
        events = seed001_events(chunk, genie_run_id=event.run_uuid, reply=reply)
        if not events:
            return ""
        created_at = event.created_at_iso
        frames = [
            ev.sse_frame(ev.to_json({**data, "created_at": created_at}), event_id=frame_id, event=name)
            for frame_id, (name, data) in zip(frame_ids(event.seq, len(events)), events, strict=True)
        ]
        seq, had = self.resume_within
        return "".join(frames[had:] if event.seq == seq else frames)
