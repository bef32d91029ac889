"""The event vocabulary: every event type a run writes to its session's log, the events by
which a run asks for an answer, the finish reasons, and the one SSE frame writer.

The log is the AI SDK UI message stream (the ``ai`` package's v6 chunk names) plus Genie's
own ``data-*`` parts. These names are the contract clients are written against: a format
(``runs.formats``) maps them to its protocol's bytes and invents none of its own here.
Nothing here imports the rest of Genie.
"""

from __future__ import annotations

import json
from typing import Any

# --- event types, in the order a turn writes them ----------------------------------------
START = "start"
START_STEP = "start-step"
TEXT_START = "text-start"
TEXT_DELTA = "text-delta"
TEXT_END = "text-end"
TOOL_INPUT_START = "tool-input-start"
TOOL_INPUT_DELTA = "tool-input-delta"
TOOL_INPUT_AVAILABLE = "tool-input-available"
TOOL_INPUT_ERROR = "tool-input-error"
TOOL_APPROVAL_REQUEST = "tool-approval-request"
TOOL_APPROVAL_RESPONSE = "tool-approval-response"
TOOL_OUTPUT_AVAILABLE = "tool-output-available"
TOOL_OUTPUT_ERROR = "tool-output-error"
TOOL_OUTPUT_DENIED = "tool-output-denied"
FINISH_STEP = "finish-step"
ERROR = "error"
ABORT = "abort"
FINISH = "finish"
# Genie's own parts
DATA_APPROVAL_REQUIRED = "data-approval-required"
DATA_CLIENT_TOOL_CALL = "data-client-tool-call"
DATA_CONNECTION_AUTH_REQUIRED = "data-connection-auth-required"
DATA_CONNECTION_AUTH_SUCCESS = "data-connection-auth-success"
DATA_COMPACTION = "data-compaction"

# --- asking for an answer ------------------------------------------------------------------
# What a pending action asks for (the ``type`` of ``pending_actions``).
APPROVAL = "approval"
CLIENT_TOOL = "client_tool"
CONNECTION = "connection"

# The events by which a run asks a person or the client for something, each with what it
# asks for: one per request; the run then pauses (``requires_action``) until it is answered.
ACTION_REQUESTS: dict[str, str] = {
    DATA_APPROVAL_REQUIRED: APPROVAL,
    DATA_CLIENT_TOOL_CALL: CLIENT_TOOL,
    DATA_CONNECTION_AUTH_REQUIRED: CONNECTION,
}
# The event that opens each request in the stream: an approval's AI SDK chunk
# (``tool-approval-request``) comes just before its ``data-approval-required``.
REQUEST_OPENERS: dict[str, str] = {
    TOOL_APPROVAL_REQUEST: APPROVAL,
    DATA_CLIENT_TOOL_CALL: CLIENT_TOOL,
    DATA_CONNECTION_AUTH_REQUIRED: CONNECTION,
}


def is_ui_command(data: dict[str, Any]) -> bool:
    """Whether a ``data-client-tool-call``'s ``data`` is a UI command: a client tool with
    ``wait_for_result: false``, sent while the turn went on (its outcome follows at once)."""
    return data.get("wait_for_result") is False


def asks_for_answer(event_type: str, chunk: dict[str, Any]) -> bool:
    """Whether the event (``chunk``: its data) asks a person or the client for an answer,
    so that the run pauses: an ``ACTION_REQUESTS`` event other than a UI command."""
    if event_type not in ACTION_REQUESTS:
        return False
    return event_type != DATA_CLIENT_TOOL_CALL or not is_ui_command(chunk.get("data") or {})


# The events that answer a request (or settle its call) in the stream.
ANSWERS = frozenset({TOOL_APPROVAL_RESPONSE, TOOL_OUTPUT_AVAILABLE, TOOL_OUTPUT_ERROR, TOOL_OUTPUT_DENIED})

# --- finish reasons ------------------------------------------------------------------------
# A provider's ``finish_reason`` (OpenAI's words) as the ``finish`` chunk's ``finishReason``
# (the AI SDK's words); a reason without a name there is ``other``.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
}
# The ``finishReason`` of a turn that ended with ``error`` or ``abort``.
ENDED_BY = {ERROR: "error", ABORT: "other"}
# A ``finishReason`` in OpenAI's words (its chat completion's ``finish_reason``).
OPENAI_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content-filter": "content_filter",
    "tool-calls": "tool_calls",
}


def finish_reason(provider_reason: str | None) -> str | None:
    """Why a model call ended, in the AI SDK's words; None when the provider did not say."""
    if provider_reason is None:
        return None
    return FINISH_REASONS.get(provider_reason, "other")


def openai_finish_reason(finish_data: dict[str, Any]) -> str:
    """A ``finish`` chunk's ``finishReason`` in OpenAI's words (``stop`` when it has none)."""
    return OPENAI_FINISH_REASONS.get(finish_data.get("finishReason") or "stop", "stop")


# --- the SSE frame -------------------------------------------------------------------------


def to_json(payload: Any) -> str:
    """JSON as the log stores and the wire carries it: compact, no spaces."""
    return json.dumps(payload, separators=(",", ":"))


def sse_frame(data_json: str, *, event_id: int | str | None = None, event: str | None = None) -> str:
    """One SSE event: ``id:`` (what a client resumes from with Last-Event-ID: the event's
    ``seq``; none for a frame the log does not hold), ``event:`` (a named event), then its
    ``data:`` line."""
    head = "" if event_id is None else f"id: {event_id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {data_json}\n\n"


def data_line(payload: dict[str, Any]) -> str:
    """A ``data:`` frame with no id for ``payload``."""
    return sse_frame(to_json(payload))


# The last frame of a stream whose client reads OpenAI's end marker (OpenAI's clients, the
# AI SDK's chat transport).
DONE = b"data: [DONE]\n\n"
