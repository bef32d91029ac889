"""OpenAI's chat completion stream: ``data: {chat.completion.chunk}`` lines, then ``data: [DONE]``.

What an OpenAI client reads of a turn: a role chunk at ``start``, the reply's text as
content deltas, calls of the client's own tools as tool-call deltas, one chunk with
``finish_reason``, the usage chunk when the request asked for it
(``stream_options.include_usage``), then ``[DONE]``. Tool calls the agent runs on the
server are the agent's business: the client sees only the text. A run that fails
ends with an error as OpenAI streams one (``data: {"error": …}``, no ``[DONE]``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from runs import vocabulary as ev
from runs.events import StreamEvent
from runs.formats.base import StreamFormat
from runs.vocabulary import data_line, openai_finish_reason


def completion_id(run_uuid: str) -> str:
    """The ``id`` of a turn's completion, streamed or not: its run's uuid."""
    return "chatcmpl-" + run_uuid.replace("-", "")


def openai_usage(usage: dict[str, Any] | None) -> dict[str, int]:
    """``{prompt_tokens, completion_tokens, total_tokens}``; 0 for what the model did not report."""
    prompt = (usage or {}).get("prompt_tokens") or 0
    completion = (usage or {}).get("completion_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def awaited_note(action: str, name: str, url: str) -> str:
    """What a paused reply says it waits for (``name``: the tool, or for a sign-in the
    connection's provider), and where that is answered."""
    if action == ev.APPROVAL:
        return f"[Waiting for approval of the tool call `{name}`: POST {url}]"
    if action == ev.CONNECTION:
        return f"[Waiting for the user to sign in to `{name}`: {url}]"
    return f"[Waiting for the client's result of the tool call `{name}`: POST {url}]"


# Where a request for action is answered: the key of its URL in the event's data, by what
# it asks for (``runs.vocabulary.ACTION_REQUESTS``).
ANSWER_URL = {ev.APPROVAL: "approval_url", ev.CLIENT_TOOL: "result_url", ev.CONNECTION: "link_url"}


class ChatCompletionChunkFormat(StreamFormat):
    """One turn as ``chat.completion.chunk`` frames. ``model`` is what the request named
    (the agent's handle), echoed in every chunk as OpenAI does; ``client_tools``: the
    names of the tools the request offered (the client runs them).

    A call to one of the client's tools is streamed as OpenAI's ``delta.tool_calls`` (its
    id is Genie's call id, which the client's ``tool`` message answers), and the
    response ends at the step's end with ``finish_reason: "tool_calls"`` while the run
    waits (``requires_action``) for the client's next request. A turn that waits for
    anything else (an approval, a sign-in, the agent's own client tool) says in its
    content what it waits for and where, and ends with ``finish_reason: "stop"``.
    """

    name = "openai"
    heartbeat = b": ping\n\n"  # a comment: OpenAI clients skip it, proxies see bytes

    def __init__(self, *, model: str, include_usage: bool = False, client_tools: frozenset[str] = frozenset()) -> None:
        self.model = model
        self.include_usage = include_usage
        self.client_tools = client_tools
        self.created = int(time.time())
        self.failed = False
        self.role_sent = False
        self.tool_calls = 0  # client tool calls streamed
        self.awaiting = False  # anything else waits

    def preamble(self) -> bytes:
        return b""  # OpenAI's stream starts with its first chunk (no ``retry:``: no resume here)

    def chunk(self, event: StreamEvent, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        role = ""
        if not self.role_sent and delta.get("role") is None:
            # A paused turn's continuation starts without ``start``: its first chunk says whose it is.
            role = self.chunk(event, {"role": "assistant", "content": ""})
        self.role_sent = True
        return role + data_line(
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
        if event.type == ev.START:
            return self.chunk(event, {"role": "assistant", "content": ""})
        if event.type == ev.TEXT_DELTA:
            return self.chunk(event, {"content": json.loads(event.data_json)["delta"]})
        if event.type == ev.ERROR:
            self.failed = True
            message = json.loads(event.data_json).get("errorText") or "The agent's turn failed."
            return data_line({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
        if event.type in ev.ACTION_REQUESTS and ev.asks_for_answer(event.type, chunk := json.loads(event.data_json)):
            return self.action_frame(event, chunk.get("data") or {})
        if event.type == ev.FINISH_STEP and (self.tool_calls or self.awaiting):
            return self.chunk(event, {}, "tool_calls" if self.tool_calls else "stop")
        if event.type == ev.FINISH:
            data = json.loads(event.data_json)
            frame = self.chunk(event, {}, openai_finish_reason(data))
            if self.include_usage:
                frame += self.usage_chunk(event, (data.get("messageMetadata") or {}).get("usage"))
            return frame
        return ""  # steps, server-side tool calls and Genie's own data events stay inside the turn

    def action_frame(self, event: StreamEvent, data: dict[str, Any]) -> str:
        """A request for action: the client's own tool call as a tool-call delta; anything
        else as content that says what is awaited."""
        if event.type == ev.DATA_CLIENT_TOOL_CALL and data.get("tool_name") in self.client_tools:
            call = {
                "index": self.tool_calls,
                "id": data["call_id"],
                "type": "function",
                "function": {"name": data["tool_name"], "arguments": json.dumps(data.get("input") or {})},
            }
            self.tool_calls += 1
            return self.chunk(event, {"tool_calls": [call]})
        self.awaiting = True
        action = ev.ACTION_REQUESTS[event.type]
        name = data.get("provider") if action == ev.CONNECTION else data.get("tool_name")
        note = awaited_note(action, name or "", data.get(ANSWER_URL[action]) or "")
        return self.chunk(event, {"content": f"\n\n{note}"})

    def ends_after(self, event: StreamEvent) -> bool:
        # A turn that waits pauses at the end of its step.
        return event.type == ev.ERROR or (event.type == ev.FINISH_STEP and bool(self.tool_calls or self.awaiting))

    def epilogue(self, *, complete: bool) -> bytes:
        if self.failed:
            return b""
        if complete:
            return ev.DONE
        error = {
            "message": "The stream was cut short; the reply goes on in its Genie session (header Genie-Session).",
            "type": "server_error",
            "param": None,
            "code": "stream_interrupted",
        }
        return data_line({"error": error}).encode()
