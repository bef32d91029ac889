"""The AI SDK's own chat endpoint (``/api/chat``): the UI message stream, one assistant
message per response, ending where the AI SDK expects a turn to end."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from runs import vocabulary as ev
from runs.events import StreamEvent
from runs.formats.base import INTERRUPTED
from runs.formats.ui_message import UIMessageFormat

# The requests ``useChat`` answers itself (an approval, a client tool's output), by the
# chunk that opens each; a connection's sign-in is answered elsewhere and ends nothing.
REQUESTS = {type_ for type_, asks in ev.REQUEST_OPENERS.items() if asks in {ev.APPROVAL, ev.CLIENT_TOOL}}
# The chunks this format reads or rewrites; every other one goes out as stored.
READ = {ev.START, ev.FINISH, ev.START_STEP, ev.FINISH_STEP, ev.ERROR, ev.ABORT, *REQUESTS, *ev.ANSWERS}

# Chunks that ai 7 reads and ai 6 refuses ("Type validation failed": its chunk schema is a
# union on ``type``), and the stream then fails. ai 6 and ai 7 send the same requests to
# /api/chat (same body, same headers: neither names its version), so this endpoint sends
# what both read. Nothing is lost: ``tool-approval-response`` repeats a decision the client
# holds already (it sent it), or, decided elsewhere, the tool's outcome follows it.
V7_ONLY = frozenset({ev.TOOL_APPROVAL_RESPONSE})


class AISDKChatFormat(UIMessageFormat):
    """What ``useChat`` reads from ``/api/chat``.

    - ``start`` and ``finish`` carry ``messageMetadata`` with the ``run_uuid`` (``finish``
      also the usage the run stored), and ``finish`` a ``finishReason``: ``error`` after an
      ``error`` chunk, ``other`` after an ``abort``, else the one the run stored (``stop``,
      ``length``, ``content-filter``, …), ``stop`` when it stored none.
    - A step that ends with a tool call waiting for an approval or a client's result ends
      the response: ``finish-step``, then ``finish {finishReason: "tool-calls"}``, while
      the run waits ``requires_action`` (a request made between steps, as a continuation
      does, ends it right after the request). Calls in ``answered`` (answered before this
      stream was planned: a replay of an earlier pause) do not end it.
    - ``continues``: the response continues a paused assistant message; it opens with
      ``start`` naming that message, then the chunks after the pause.
    - The response ends after the first ``finish``: one message per response.
    - Only chunks that ai 6 and ai 7 both read (``V7_ONLY`` are left out).
    """

    name = "ai-sdk-chat"

    def __init__(self, *, answered: Iterable[str] = (), continues: tuple[str, str] | None = None) -> None:
        self.answered = set(answered)
        self.continues = continues  # (message id, run uuid)
        self.waiting: set[str] = set()
        self.step_open = False
        self.approved: set[str] = set()
        self.ended_by: str | None = None  # the finishReason an ``error`` or ``abort`` gives
        self.ending = False

    def preamble(self) -> bytes:
        opening = super().preamble()
        if self.continues is None:
            return opening
        message_id, run_uuid = self.continues
        start = {"type": ev.START, "messageId": message_id, "messageMetadata": {"run_uuid": run_uuid}}
        return opening + ev.data_line(start).encode()

    def frame(self, event: StreamEvent) -> str:
        if event.type not in READ:
            return event.sse()
        chunk = json.loads(event.data_json)
        if event.type in REQUESTS:
            # A UI command asks for nothing: the turn went on (its outcome follows).
            return event.sse() if ev.is_ui_command(chunk.get("data") or {}) else self.request(event, chunk)
        if event.type in {ev.START, ev.FINISH}:
            return self.with_metadata(event, chunk)
        if event.type in ev.ANSWERS:
            self.waiting.discard(chunk.get("toolCallId") or chunk.get("approvalId"))
            if chunk.get("approved") is True:
                self.approved.add(chunk["approvalId"])
            if event.type in V7_ONLY:
                return ""
        elif event.type in {ev.START_STEP, ev.FINISH_STEP}:
            self.step_open = event.type == ev.START_STEP
            if not self.step_open and self.waiting:
                return event.sse() + self.pause(event)
        else:  # error, abort: how the turn ends
            self.ended_by = ev.ENDED_BY[event.type]
        return event.sse()

    def request(self, event: StreamEvent, chunk: dict[str, Any]) -> str:
        """A request for an approval or a client tool's result: the turn waits for it."""
        call_id = chunk.get("toolCallId") or chunk.get("data", {}).get("call_id")
        frame = event.sse()  # chunks the log does not hold go as ``ev.data_line`` (no id to resume from)
        if call_id in self.approved:
            # An approved client tool: its part leaves ``approval-responded`` for
            # ``input-available`` (the SDK's onToolCall fires), or the SDK's
            # lastAssistantMessageIsCompleteWithApprovalResponses would send it again and again.
            data = chunk["data"]
            ask = {"type": ev.TOOL_INPUT_AVAILABLE, "toolCallId": call_id, "toolName": data["tool_name"]}
            frame = ev.data_line({**ask, "input": data["input"]}) + frame
        if call_id not in self.answered:
            self.waiting.add(call_id)
            if not self.step_open:  # asked between steps (a continuation): the run pauses right here
                return frame + self.pause(event)
        return frame

    def with_metadata(self, event: StreamEvent, chunk: dict[str, Any]) -> str:
        """``start`` and ``finish`` name the run; ``finish`` says why the turn ended."""
        chunk["messageMetadata"] = {"run_uuid": event.run_uuid, **chunk.get("messageMetadata", {})}
        if event.type == ev.FINISH:
            self.ending = True
            chunk["finishReason"] = self.ended_by or chunk.get("finishReason") or "stop"
        return ev.sse_frame(ev.to_json(chunk), event_id=event.seq)

    def pause(self, event: StreamEvent) -> str:
        self.ending = True
        return ev.data_line(
            {"type": ev.FINISH, "finishReason": "tool-calls", "messageMetadata": {"run_uuid": event.run_uuid}}
        )

    def ends_after(self, event: StreamEvent) -> bool:
        return self.ending

    def epilogue(self, *, complete: bool) -> bytes:
        return ev.DONE if complete else INTERRUPTED
