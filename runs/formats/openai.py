"""OpenAI's chat completion stream: ``data: {chat.completion.chunk}`` lines, then ``data: [DONE]``.

What an OpenAI client reads of a turn: a role chunk at ``start``, the reply's text as
content deltas, one chunk with ``finish_reason``, the usage chunk when the request asked
for it (``stream_options.include_usage``), then ``[DONE]``. Tool calls the agent runs on
the server are the agent's business: the client sees only the text. A run that fails
ends with an error as OpenAI streams one (``data: {"error": …}``, no ``[DONE]``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from runs.events import ACTION_REQUESTS, StreamEvent
from runs.formats.base import StreamFormat

DONE = b"data: [DONE]\n\n"

# The AI SDK's finish reasons (a ``finish`` chunk's ``finishReason``) in OpenAI's words.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "content-filter": "content_filter",
    "tool-calls": "tool_calls",
}


def completion_id(run_uuid: str) -> str:
    """The ``id`` of a turn's completion, streamed or not: its run's uuid."""
    return "chatcmpl-" + run_uuid.replace("-", "")


def openai_finish_reason(finish_data: dict[str, Any]) -> str:
    return FINISH_REASONS.get(finish_data.get("finishReason") or "stop", "stop")


def openai_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """``{prompt_tokens, completion_tokens, total_tokens}``; 0 for what the model did not report."""
    prompt = (usage or {}).get("prompt_tokens") or 0
    completion = (usage or {}).get("completion_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def data_line(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


class ChatCompletionChunkFormat(StreamFormat):
    """One turn as ``chat.completion.chunk`` frames. ``model`` is what the request named
    (the agent's handle), echoed in every chunk as OpenAI does.

    A turn that asks a person or the client for something (an approval, a client tool, a
    connection) cannot be answered over this protocol: the response ends there with
    ``finish_reason: "tool_calls"`` while the run waits (``requires_action``) for an
    answer through Genie's own API.
    """

    name = "openai"
    heartbeat = b": ping\n\n"  # a comment: OpenAI clients skip it, proxies see bytes

    def __init__(self, *, model: str, include_usage: bool = False) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())
        self.failed = False

    def preamble(self) -> bytes:
        return b""  # OpenAI's stream starts with its first chunk (no ``retry:``: no resume here)

    def chunk(self, event: StreamEvent, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        return data_line(
            {
                "id": completion_id(event.run_uuid),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
        )

    def usage_chunk(self, event: StreamEvent, usage: dict[str, Any] | None) -> str:
        return data_line(
            {
                "id": completion_id(event.run_uuid),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": None,
                "choices": [],
                "usage": openai_usage(usage),
            }
        )

    def frame(self, event: StreamEvent) -> str:
        if self.failed:
            return ""
        if event.type == "start":
            return self.chunk(event, {"role": "assistant", "content": ""})
        if event.type == "text-delta":
            return self.chunk(event, {"content": json.loads(event.data_json)["delta"]})
        if event.type == "error":
            self.failed = True
            message = json.loads(event.data_json).get("errorText") or "The agent's turn failed."
            return data_line({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
        if event.type in ACTION_REQUESTS:
            return self.chunk(event, {}, "tool_calls")
        if event.type == "finish":
            data = json.loads(event.data_json)
            frame = self.chunk(event, {}, openai_finish_reason(data))
            if self.include_usage:
                frame += self.usage_chunk(event, (data.get("messageMetadata") or {}).get("usage"))
            return frame
        return ""  # steps, server-side tool calls and Genie's own data events stay inside the turn

    def ends_after(self, event: StreamEvent) -> bool:
        return event.type == "error" or event.type in ACTION_REQUESTS

    def epilogue(self, *, complete: bool) -> bytes:
        if self.failed:
            return b""
        if complete:
            return DONE
        error = {
            "message": "The stream was cut short; the reply goes on in its Genie session (header Genie-Session).",
            "type": "server_error",
            "param": None,
            "code": "stream_interrupted",
        }
        return data_line({"error": error}).encode()
