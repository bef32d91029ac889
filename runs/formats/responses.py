"""OpenAI's Responses API stream: ``event: response.*`` frames, each with its ``sequence_number``.

A response is one run. ``ResponseState`` reads the run's stored events (the AI SDK chunks of
the event log) and keeps the response they describe (its ``output`` items, status, usage,
error) along with the Responses events each chunk becomes. The stream (``ResponsesFormat``)
writes those events; ``GET /v1/responses/{id}`` replays the same log through the same state
(``response_from_log``), so a streamed response and a retrieved one never disagree.

What a run's chunks become:

- ``start``: ``response.created`` and ``response.in_progress``;
- a text part: a ``message`` item (``response.output_item.added``,
  ``response.content_part.added``, ``response.output_text.delta`` per token,
  ``response.output_text.done``, ``response.content_part.done``,
  ``response.output_item.done``);
- a call of one of the client's function tools (``client_tools``): a ``function_call`` item
  whose ``call_id`` is Genie's call id (``response.function_call_arguments.delta`` / ``.done``);
- a server tool waiting for an approval: an ``mcp_approval_request`` item whose ``id`` is the
  call id and ``server_label`` the agent's tool definition that offers it;
- ``finish``: ``response.completed``, ``response.incomplete`` (the token cap) or
  ``response.failed`` (also for a stopped run, whose status is ``cancelled``: the Responses
  stream has no cancelled event).

The agent's own server tools run inside the turn: their calls and outputs are not items. A
run that waits for the client (its function calls, an approval, a user's sign-in) ends the
response there, ``completed`` as OpenAI completes a response with function calls; the next
request answers it and the same run goes on.

Sequence numbers are derived from the event ids so that a resume (``starting_after=N``) is
the relay reading from an event id: event ``seq`` owns the numbers ``seq*10 .. seq*10+9``,
its frames taking the last ones (its last frame is always ``seq*10+9``). So ``N`` names an
event and how many of its frames the client has (``resume_point``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from runs.events import StreamEvent
from runs.formats.base import StreamFormat
from runs.vocabulary import asks_for_answer, sse_frame, to_json

NUMBERS_PER_EVENT = 10


def response_id(run_uuid: str) -> str:
    """A response's id: ``resp_`` + its run's uuid as hex."""
    return "resp_" + run_uuid.replace("-", "")


def sequence_number(seq: int, index: int, count: int) -> int:
    """Frame ``index`` of the ``count`` an event ``seq`` becomes."""
    return seq * NUMBERS_PER_EVENT + NUMBERS_PER_EVENT - count + index


def resume_point(starting_after: int) -> int:
    """The last event a client that has every frame up to ``starting_after`` has whole:
    the relay reads from there, and the format leaves out the frames numbered up to
    ``starting_after`` of the event after it."""
    seq, index = divmod(starting_after, NUMBERS_PER_EVENT)
    return seq if index == NUMBERS_PER_EVENT - 1 else seq - 1


def responses_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    prompt = (usage or {}).get("prompt_tokens") or 0
    completion = (usage or {}).get("completion_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


@dataclass
class ResponseHead:
    """What a response says that its events do not: read from the run by the view."""

    id: str
    created_at: int
    model: str
    background: bool = False
    instructions: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    previous_response_id: str | None = None
    store: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    user: str | None = None
    # The client's function tools (their calls are ``function_call`` items).
    client_tools: frozenset[str] = frozenset()
    # The agent's MCP tool definitions, by name: a call named ``<name>__<tool>`` is ``<tool>``
    # of the MCP server labelled ``<name>``.
    mcp_servers: frozenset[str] = frozenset()


Frame = tuple[str, dict[str, Any]]


class ResponseState:
    """The response a run's events describe so far, and the Responses events each becomes.

    ``answered``: calls whose request was answered before this reader began (a replay of an
    earlier pause must not end the response there)."""

    def __init__(self, head: ResponseHead, *, answered: set[str] | frozenset[str] = frozenset()) -> None:
        self.head = head
        self.answered = set(answered)
        self.status = "queued"
        self.output: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.incomplete_details: dict[str, Any] | None = None
        self.message: int | None = None  # the open message item's index
        self.calls: dict[str, int] = {}  # a client function call's item index, by call id
        self.waiting: set[str] = set()
        self.step_open = False
        self.ended = False  # the response ended (its finish, or a pause)
        self.run_hex = head.id.removeprefix("resp_")

    # --- the response object ----------------------------------------------------------

    def snapshot(self, status: str | None = None) -> dict[str, Any]:
        head = self.head
        return {
            "id": head.id,
            "object": "response",
            "created_at": head.created_at,
            "status": status or self.status,
            "background": head.background,
            "error": self.error,
            "incomplete_details": self.incomplete_details,
            "instructions": head.instructions,
            "max_output_tokens": head.max_output_tokens,
            "metadata": head.metadata,
            "model": head.model,
            "output": copy.deepcopy(self.output),
            "parallel_tool_calls": True,
            "previous_response_id": head.previous_response_id,
            "store": head.store,
            "temperature": head.temperature,
            "text": head.text,
            "tool_choice": head.tool_choice,
            "tools": head.tools,
            "top_p": head.top_p,
            "truncation": "disabled",
            "usage": self.usage,
            "user": head.user,
        }

    def lifecycle(self, kind: str) -> Frame:
        return kind, {"response": self.snapshot()}

    # --- reading events ---------------------------------------------------------------

    def read(self, seq: int, kind: str, data: dict[str, Any]) -> list[Frame]:
        """The Responses events of one stored chunk (none for most of the bookkeeping)."""
        was_ended = self.ended
        handler = getattr(self, "on_" + kind.replace("-", "_"), None)
        frames = handler(seq, data) if handler is not None else []
        if asks_for_answer(kind, data):
            call_id = (data.get("data") or {}).get("call_id")
            if call_id not in self.answered:
                self.waiting.add(call_id)
                if not self.step_open:  # asked between steps (a continuation): the response ends here
                    frames += self.pause()
        return [] if was_ended else frames  # after a pause, the events only change the state

    def on_start(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.status = "in_progress"
        return [self.lifecycle("response.created"), self.lifecycle("response.in_progress")]

    def on_start_step(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.step_open = True
        return []

    def on_finish_step(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.step_open = False
        return self.pause() if self.waiting else []

    def on_text_start(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        item = {
            "id": f"msg_{self.run_hex}_{seq}",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self.output.append(item)
        self.message = index = len(self.output) - 1
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        added = ("response.output_item.added", {"output_index": index, "item": copy.deepcopy(item)})
        item["content"].append(part)
        return [
            added,
            (
                "response.content_part.added",
                {"item_id": item["id"], "output_index": index, "content_index": 0, "part": dict(part)},
            ),
        ]

    def on_text_delta(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        if self.message is None:
            return []
        item = self.output[self.message]
        item["content"][0]["text"] += data.get("delta", "")
        where = {"item_id": item["id"], "output_index": self.message, "content_index": 0}
        return [("response.output_text.delta", {**where, "delta": data.get("delta", ""), "logprobs": []})]

    def on_text_end(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        if self.message is None:
            return []
        index, self.message = self.message, None
        item = self.output[index]
        item["status"] = "completed"
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            ("response.output_text.done", {**where, "text": part["text"], "logprobs": []}),
            ("response.content_part.done", {**where, "part": dict(part)}),
            ("response.output_item.done", {"output_index": index, "item": copy.deepcopy(item)}),
        ]

    def on_tool_input_start(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        if data.get("toolName") not in self.head.client_tools:
            return []  # the agent's own tool: it runs inside the turn
        call_id = data["toolCallId"]
        item = {
            "id": f"fc_{call_id}",
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": data["toolName"],
            "arguments": "",
        }
        self.output.append(item)
        self.calls[call_id] = len(self.output) - 1
        return [("response.output_item.added", {"output_index": len(self.output) - 1, "item": dict(item)})]

    def on_tool_input_delta(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        index = self.calls.get(data.get("toolCallId"))
        if index is None:
            return []
        item = self.output[index]
        item["arguments"] += data.get("inputTextDelta", "")
        delta = {"item_id": item["id"], "output_index": index, "delta": data.get("inputTextDelta", "")}
        return [("response.function_call_arguments.delta", delta)]

    def on_tool_input_available(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        index = self.calls.get(data.get("toolCallId"))
        if index is None:
            return []
        item = self.output[index]
        item["arguments"] = json.dumps(data.get("input") or {}, separators=(",", ":"))
        item["status"] = "completed"
        done = {"item_id": item["id"], "output_index": index, "name": item["name"], "arguments": item["arguments"]}
        return [
            ("response.function_call_arguments.done", done),
            ("response.output_item.done", {"output_index": index, "item": dict(item)}),
        ]

    def on_tool_input_error(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        # Arguments that are not a JSON object: the model is told, the client has nothing to run.
        index = self.calls.pop(data.get("toolCallId"), None)
        if index is None:
            return []
        item = self.output[index]
        item["status"] = "incomplete"
        return [("response.output_item.done", {"output_index": index, "item": dict(item)})]

    def on_data_approval_required(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        action = data.get("data") or {}
        name = action.get("tool_name", "")
        server, _, tool = name.partition("__")
        label, name = (server, tool) if tool and server in self.head.mcp_servers else (name, name)
        item = {
            "id": action.get("call_id", ""),
            "type": "mcp_approval_request",
            "name": name,
            "arguments": json.dumps(action.get("input") or {}, separators=(",", ":")),
            "server_label": label,
        }
        self.output.append(item)
        index = len(self.output) - 1
        return [
            ("response.output_item.added", {"output_index": index, "item": dict(item)}),
            ("response.output_item.done", {"output_index": index, "item": dict(item)}),
        ]

    def on_tool_output_available(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.waiting.discard(data.get("toolCallId"))
        return []

    on_tool_output_error = on_tool_output_available
    on_tool_output_denied = on_tool_output_available

    def on_tool_approval_response(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.waiting.discard(data.get("approvalId"))
        return []

    def on_error(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.status = "failed"
        self.error = {"code": "server_error", "message": data.get("errorText") or "The agent's turn failed."}
        return []

    def on_abort(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.status = "cancelled"
        return []

    def on_finish(self, seq: int, data: dict[str, Any]) -> list[Frame]:
        self.usage = responses_usage((data.get("messageMetadata") or {}).get("usage"))
        self.waiting.clear()
        if self.status == "in_progress":
            if data.get("finishReason") == "length":
                self.status = "incomplete"
                self.incomplete_details = {"reason": "max_output_tokens"}
                cut = [item for item in self.output if item["type"] == "message"][-1:]
                for item in cut:  # the message the cap cut, as OpenAI marks it
                    item["status"] = "incomplete"
            else:
                self.status = "completed"
        self.ended = True
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            self.status, "response.failed"
        )
        return [self.lifecycle(kind)]

    def pause(self) -> list[Frame]:
        """The run waits for the client: this response ends ``completed`` (OpenAI's word for
        a response whose function calls or approval requests the client answers next)."""
        if self.ended:
            return []
        self.ended = True
        return [("response.completed", {"response": self.snapshot("completed")})]


def read_log(state: ResponseState, events: list[tuple[int, str, dict[str, Any]]]) -> ResponseState:
    for seq, kind, data in events:
        state.read(seq, kind, data)
    return state


class ResponsesFormat(StreamFormat):
    """One response's stream. ``starting_after``: frames numbered up to it are left out (a
    resume); ``continues_after``: the stream goes on with a paused response after that event
    id, opening with ``response.created`` and ``response.in_progress`` as a new stream must
    (the events before it are read, not sent)."""

    name = "responses"
    reads_whole_run = True
    heartbeat = b": ping\n\n"

    def __init__(
        self,
        state: ResponseState,
        *,
        starting_after: int | None = None,
        continues_after: int | None = None,
    ) -> None:
        self.state = state
        self.starting_after = starting_after
        self.continues_after = continues_after

    def preamble(self) -> bytes:
        return b""  # OpenAI's stream starts with its first event

    def frame(self, event: StreamEvent) -> str:
        frames = self.state.read(event.seq, event.type, json.loads(event.data_json))
        numbered = [
            (sequence_number(event.seq, index, len(frames)), kind, payload)
            for index, (kind, payload) in enumerate(frames)
        ]
        if self.continues_after is not None and event.seq > self.continues_after:
            opening = [self.state.lifecycle("response.created"), self.state.lifecycle("response.in_progress")]
            base = self.continues_after * NUMBERS_PER_EVENT + NUMBERS_PER_EVENT - len(opening)
            numbered = [(base + index, kind, payload) for index, (kind, payload) in enumerate(opening)] + numbered
            self.continues_after = None
        if self.starting_after is not None:
            numbered = [frame for frame in numbered if frame[0] > self.starting_after]
        return "".join(sse(number, kind, payload) for number, kind, payload in numbered)

    def ends_after(self, event: StreamEvent) -> bool:
        return self.state.ended

    def epilogue(self, *, complete: bool) -> bytes:
        if complete:
            return b""
        error = {
            "type": "error",
            "code": "stream_interrupted",
            "message": "The stream was cut short; resume it with GET /v1/responses/{id}?stream=true&starting_after=N.",
            "param": None,
            "sequence_number": 0,
        }
        return sse_frame(to_json(error), event="error").encode()


def sse(number: int, kind: str, payload: dict[str, Any]) -> str:
    body = {"type": kind, "sequence_number": number, **payload}
    return sse_frame(to_json(body), event=kind)
