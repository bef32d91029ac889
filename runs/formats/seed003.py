"""Seed 003's stream: ``data: {"type": "token" | "command" | "error" | "done", …}`` lines.

The document's client reads only ``data:`` lines (no ``event:`` name, no ids): ``token``
events to append, ``error`` when generation fails, and ``done`` with the whole assembled
message and its metadata. Genie adds ``command``: a UI command (a client tool call) the
client runs, and may answer with ``POST /api/v1/chat/command {session_id, call_id, output}``
(a command whose tool waits for its result: the stream stays open meanwhile and goes on
with the rest of the reply).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from runs import vocabulary as ev
from runs.events import StreamEvent
from runs.formats.base import StreamFormat
from runs.vocabulary import data_line


def approval_action(data: dict[str, Any], calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": ev.APPROVAL,
        "call_id": data.get("call_id", ""),
        "tool_name": data.get("tool_name", ""),
        "input": data.get("input"),
        "url": data.get("approval_url", ""),
        "expires_at": data.get("expires_at"),
    }


def connection_action(data: dict[str, Any], calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    call = calls.get(data.get("call_id", ""), {})
    return {
        "type": ev.CONNECTION,
        "call_id": data.get("call_id", ""),
        "tool_name": call.get("tool_name", ""),
        "input": call.get("input"),
        "url": data.get("link_url", ""),  # POST it for the sign-in link, as GET sessions/{s} lists it
        "expires_at": (data.get("auth_link") or {}).get("expires_at"),
    }


# What a turn may wait for that seed 003 itself cannot answer (an approval, a sign-in; a
# client tool is its ``command``), as a pending action (the shape of ``GET sessions/{s}``'s
# ``pending_actions``), by the event that asks (``runs.vocabulary.ACTION_REQUESTS``).
ACTION_OF: dict[str, Callable[[dict[str, Any], dict[str, dict[str, Any]]], dict[str, Any]]] = {
    ev.APPROVAL: approval_action,
    ev.CONNECTION: connection_action,
}
PENDING_ACTIONS = {type_: ACTION_OF[asks] for type_, asks in ev.ACTION_REQUESTS.items() if asks in ACTION_OF}


class Seed003Format(StreamFormat):
    """One turn of the event log as seed 003's events. Keeps the text so far, so ``done``
    carries the whole message (a turn's stream always starts at the turn's ``start``).

    - ``token`` per text delta; ``command`` per UI command (a client tool call), which the
      stream goes on past; ``error`` when generation fails; ``done`` at the end, whose
      metadata lists the turn's UI commands (``commands: [{call_id, name, input}]``).
    - A turn that waits for what seed 003 cannot answer (an approval, a user's sign-in)
      ends the stream with ``done``: the message so far, ``metadata.status:
      "action_required"`` and ``pending_actions`` (as ``GET sessions/{s}`` lists them: where
      to answer each). The run waits; its reply goes on and lands in the transcript. It
      ends when the model step that asked is over (every request of that step listed), or
      at once for a request made between steps.
    - A compaction (``data-compaction``): its summary as ``token`` events, then ``done`` with
      ``metadata.compaction: {before_tokens, after_tokens, messages_compacted}``.
    """

    name = "seed-003"

    def __init__(self) -> None:
        self.message_id = ""
        self.text: list[str] = []
        self.status = "complete"
        self.calls: dict[str, dict[str, Any]] = {}  # call id -> {tool_name, input}, for pending actions
        self.commands: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.compaction: dict[str, Any] | None = None
        self.step_open = False
        self.ending = False

    def frame(self, event: StreamEvent) -> str:  # noqa: C901  (one branch per event the seed shows)
        chunk = json.loads(event.data_json)
        if event.type == ev.START:
            self.message_id = chunk.get("messageId", "")
        elif event.type in {ev.START_STEP, ev.FINISH_STEP}:
            self.step_open = event.type == ev.START_STEP
            if not self.step_open and self.pending:
                return self.action_required(event)
        elif event.type == ev.TEXT_DELTA:
            self.text.append(chunk["delta"])
            return data_line({"type": "token", "content": chunk["delta"]})
        elif event.type == ev.TOOL_INPUT_AVAILABLE:
            self.calls[chunk["toolCallId"]] = {"tool_name": chunk.get("toolName", ""), "input": chunk.get("input")}
        elif event.type == ev.DATA_CLIENT_TOOL_CALL:
            call = chunk["data"]
            command = {"call_id": call["call_id"], "name": call["tool_name"], "input": call["input"]}
            self.commands.append(command)
            return data_line({"type": "command", **command})
        elif event.type in PENDING_ACTIONS:
            self.pending.append(PENDING_ACTIONS[event.type](chunk["data"], self.calls))
            if not self.step_open:  # asked between steps (a turn resumed to ask again): it waits now
                return self.action_required(event)
        elif event.type == ev.DATA_COMPACTION:
            self.compaction = chunk["data"]
        elif event.type == ev.ERROR:
            self.status = "failed"
            return data_line({"type": "error", "code": "generation_failed", "message": chunk.get("errorText", "")})
        elif event.type == ev.ABORT:
            self.status = "stopped"
        elif event.type == ev.FINISH:
            if chunk.get("finishReason") == "length" and self.status == "complete":
                self.status = "incomplete"  # cut by the token cap
            return data_line(self.done(event, chunk.get("messageMetadata") or {}))
        return ""

    def action_required(self, event: StreamEvent) -> str:
        self.ending = True
        self.status = "action_required"
        return data_line(self.done(event, {"pending_actions": self.pending}))

    def ends_after(self, event: StreamEvent) -> bool:
        return self.ending

    def done(self, event: StreamEvent, metadata: dict[str, Any]) -> dict[str, Any]:
        message = {"id": self.message_id, "role": "assistant", "content": "".join(self.text)}
        # A compaction run has no message (its ``start`` names none) and its ``done`` names no
        # run: seed 003's compaction ``done`` has kept its fields since before it was a run.
        run = {"run_id": event.run_uuid} if event.run_uuid and self.message_id else {}
        extra = {"compaction": self.compaction} if self.compaction is not None else {}
        return {
            "type": "done",
            "message": message,
            "metadata": {**run, "status": self.status, "commands": self.commands, **extra, **metadata},
        }

    def epilogue(self, *, complete: bool) -> bytes:
        # A seed 003 client knows no resume: a stream cut short says so in its own terms.
        if complete:
            return b""
        interrupted = {
            "type": "error",
            "code": "stream_interrupted",
            "message": "The stream ended before the reply; the reply goes on and is stored in the transcript.",
        }
        return data_line(interrupted).encode()
