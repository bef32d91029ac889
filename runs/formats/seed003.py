"""Seed 003's stream: ``data: {"type": "token" | "command" | "error" | "done", …}`` lines.

The document's client reads only ``data:`` lines (no ``event:`` name, no ids): ``token``
events to append, ``error`` when generation fails, and ``done`` with the whole assembled
message and its metadata. Genie adds ``command``: a UI command (a client tool call) the
client runs and answers with ``POST /api/v1/chat/command {session_id, call_id, output}``;
the stream stays open meanwhile and goes on with the rest of the reply.
"""

from __future__ import annotations

import json
from typing import Any

from runs.events import StreamEvent
from runs.formats.base import StreamFormat


def data_line(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


# What a turn may wait for that only Genie's own API answers (approval, a user's sign-in).
ACTION_REQUIRED = {
    "data-approval-required": "A tool call waits for approval: POST sessions/{s}/tool-calls/{call_id}/approval.",
    "data-connection-auth-required": "A tool needs the user to connect an account: open the url.",
}


class Seed003Format(StreamFormat):
    """One turn of the event log as seed 003's events. Keeps the text so far, so ``done``
    carries the whole message (a turn's stream always starts at the turn's ``start``)."""

    name = "seed-003"

    def __init__(self) -> None:
        self.message_id = ""
        self.text: list[str] = []
        self.status = "complete"

    def frame(self, event: StreamEvent) -> str:
        chunk = json.loads(event.data_json)
        if event.type == "start":
            self.message_id = chunk.get("messageId", "")
        elif event.type == "text-delta":
            self.text.append(chunk["delta"])
            return data_line({"type": "token", "content": chunk["delta"]})
        elif event.type == "data-client-tool-call":
            call = chunk["data"]
            return data_line(
                {"type": "command", "call_id": call["call_id"], "name": call["tool_name"], "input": call["input"]}
            )
        elif event.type in ACTION_REQUIRED:
            # Seed 003 knows no approvals or sign-ins: its stream says what waits, and where
            # it is answered, then ends (the run waits; its reply continues in the transcript).
            action = chunk["data"]
            return data_line(
                {
                    "type": "error",
                    "code": "action_required",
                    "message": ACTION_REQUIRED[event.type],
                    "call_id": action.get("call_id", ""),
                    "url": action.get("approval_url") or (action.get("auth_link") or {}).get("url", ""),
                }
            )
        elif event.type == "error":
            self.status = "failed"
            return data_line({"type": "error", "code": "generation_failed", "message": chunk.get("errorText", "")})
        elif event.type == "abort":
            self.status = "stopped"
        elif event.type == "finish":
            if chunk.get("finishReason") == "length" and self.status == "complete":
                self.status = "incomplete"  # cut by the token cap
            return data_line(self.done(event, chunk.get("messageMetadata") or {}))
        return ""

    def ends_after(self, event: StreamEvent) -> bool:
        return event.type in ACTION_REQUIRED

    def done(self, event: StreamEvent, metadata: dict[str, Any]) -> dict[str, Any]:
        message = {"id": self.message_id, "role": "assistant", "content": "".join(self.text)}
        return {
            "type": "done",
            "message": message,
            "metadata": {"run_id": event.run_uuid, "status": self.status, **metadata},
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
