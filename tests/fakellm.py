"""A small, real OpenAI-compatible HTTP server, scripted per test.

Each test registers a script under a model name it owns; the worker (another process)
calls ``POST /v1/chat/completions`` with that model and gets the scripted reply.

Script steps:
    ("text", "Hello")          one streamed content delta
    ("delay", 0.2)             sleep before the next step
    ("status", 500)            answer with this HTTP status instead of a stream (before any text)
    ("malformed", None)        send a line that is not JSON
    ("drop", None)             close the connection mid-stream
    ("stamp", None)            one delta whose text is the send time (time.time()), for latency
    ("quiet", 3.0)             no content for this long, only SSE comments (no read timeout)
    ("tool_call", {"id", "name", "arguments"})  a tool call, its arguments in two fragments;
                               the reply then finishes with ``finish_reason: tool_calls``
    ("auto", None)             a reply decided from the request, as a compliant model would
                               answer it (``auto_reply``): real clients' own test suites
                               drive many turns with it
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = tuple[str, Any]


class FakeLLM:
    def __init__(self) -> None:
        self.scripts: dict[str, list[list[Step]]] = defaultdict(list)
        self.requests: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.default_reply: list[Step] = [("text", "OK")]
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLMHandler)
        self.server.fake = self
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeLLM:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def script(self, model: str, *replies: list[Step]) -> None:
        """Queue replies for ``model``: one per call, in order; the last one repeats."""
        with self._lock:
            self.scripts[model].extend(replies)

    def replace_script(self, model: str, *replies: list[Step]) -> None:
        """Forget ``model``'s queued replies and queue these."""
        with self._lock:
            self.scripts[model] = list(replies)

    @staticmethod
    def is_title_request(body: dict[str, Any]) -> bool:
        """A session title's call, which a worker makes after a first reply, on its own
        queue, so in no fixed order with the next turn's."""
        from runs.titles import TITLE_PROMPT  # Django's apps are ready only where tests run

        return str(body["messages"][0].get("content", "")).startswith(TITLE_PROMPT.split("{", 1)[0])

    def turn_requests(self, model: str) -> list[dict[str, Any]]:
        """``model``'s requests without the session titles' calls."""
        return [body for body in self.requests[model] if not self.is_title_request(body)]

    def next_reply(self, model: str, body: dict[str, Any]) -> list[Step]:
        with self._lock:
            self.requests[model].append(body)
            queue = self.scripts.get(model)
            if not queue:
                return self.default_reply
            return queue.pop(0) if len(queue) > 1 else queue[0]


class FakeLLMHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        reply = self.server.fake.next_reply(body.get("model", ""), body)
        statuses = [value for kind, value in reply if kind == "status"]
        if statuses:
            for kind, value in reply:
                if kind == "delay":
                    time.sleep(value)
            payload = json.dumps({"error": {"message": "scripted failure"}}).encode()
            self.send_response(statuses[0])
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._stream(body, reply)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        event = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "fake",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
        }
        if usage is not None:
            event["usage"] = usage
        return f"data: {json.dumps(event)}\n\n".encode()

    def _stream(self, body: dict[str, Any], reply: list[Step]) -> None:
        if any(kind == "auto" for kind, _ in reply):
            reply = auto_reply(body)
        count = 0
        finish = "stop"
        calls = 0
        self.wfile.write(self._chunk({"role": "assistant", "content": ""}))
        self.wfile.flush()
        for kind, value in reply:
            if kind == "delay":
                time.sleep(value)
            elif kind == "text":
                count += 1
                self.wfile.write(self._chunk({"content": value}))
                self.wfile.flush()
            elif kind == "quiet":
                until = time.monotonic() + value
                while time.monotonic() < until:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    time.sleep(0.5)
            elif kind == "stamp":
                count += 1
                self.wfile.write(self._chunk({"content": f"{time.time():.6f} "}))
                self.wfile.flush()
            elif kind == "malformed":
                self.wfile.write(b"data: {this is not json\n\n")
                self.wfile.flush()
                return
            elif kind == "drop":
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            elif kind == "tool_call":
                finish = "tool_calls"
                head, tail = (
                    value["arguments"][: len(value["arguments"]) // 2],
                    value["arguments"][len(value["arguments"]) // 2 :],
                )
                first = {
                    "index": calls,
                    "id": value["id"],
                    "type": "function",
                    "function": {"name": value["name"], "arguments": head},
                }
                self.wfile.write(self._chunk({"tool_calls": [first]}))
                self.wfile.write(self._chunk({"tool_calls": [{"index": calls, "function": {"arguments": tail}}]}))
                self.wfile.flush()
                calls += 1
        self.wfile.write(self._chunk({}, finish=finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(
                self._chunk({}, usage={"prompt_tokens": 7, "completion_tokens": count, "total_tokens": 7 + count})
            )
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


_auto_ids = itertools.count(1)


def auto_reply(body: dict[str, Any]) -> list[Step]:
    """What a compliant model answers to ``body``, deterministically:

    - offered tools (and ``tool_choice`` not ``none``): after a user message, a call of
      the tool ``tool_choice`` names, else of one the message names, else of the first;
      after tool results, a call of the next tool not called since the user's message
      (each tool once a turn), and when none is left an answer;
    - an answer is JSON built from ``response_format``'s schema (``json_schema``; ``{}``
      for ``json_object``), else a sentence (quoting a tool's result when there was one).

    Arguments and JSON values come from the user's message: its numbers for integers and
    numbers, in order; its quoted texts (else ``"cats"``) for strings."""
    messages = body.get("messages") or []
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    turn = messages[users[-1] :] if users else messages
    hints = Hints(content_text(turn[0].get("content")) if turn else "")
    tools = [tool["function"] for tool in body.get("tools") or []]
    choice = body.get("tool_choice")
    if tools and choice != "none":
        called = {c["function"]["name"] for m in turn for c in m.get("tool_calls") or []}
        if isinstance(choice, dict):
            pick = [t for t in tools if t["name"] == choice["function"]["name"]]
        elif messages and messages[-1].get("role") == "user":
            pick = sorted(tools, key=lambda t: t["name"] not in hints.text)
        else:
            pick = [t for t in tools if t["name"] not in called]
        if pick and not (messages[-1].get("role") == "tool" and pick[0]["name"] in called):
            tool = pick[0]
            arguments = json.dumps(value_for(tool.get("parameters") or {"type": "object"}, hints), ensure_ascii=False)
            return [("tool_call", {"id": f"fake_call_{next(_auto_ids)}", "name": tool["name"], "arguments": arguments})]
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format["json_schema"].get("schema") or {"type": "object"}
        text = json.dumps(value_for(schema, hints, root=schema), ensure_ascii=False)
        return [("text", text[: len(text) // 2]), ("text", text[len(text) // 2 :])]
    if response_format.get("type") == "json_object":
        return [("text", "{}")]
    results = [content_text(m.get("content")) for m in turn if m.get("role") == "tool"]
    if results:
        return [("text", "The tool answered: "), ("text", results[-1])]
    return [("text", "Hello! "), ("text", "I am the scripted model.")]


def content_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


class Hints:
    """Values for arguments, taken from the user's message in order."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.numbers = iter(int(n) for n in re.findall(r"-?\d+", text))
        self.strings = iter(re.findall(r"'([^']+)'|\"([^\"]+)\"", text))

    def number(self) -> int:
        return next(self.numbers, 1)

    def string(self) -> str:
        found = next(self.strings, None)
        return (found[0] or found[1]) if found else "cats"


def value_for(schema: dict[str, Any], hints: Hints, root: dict[str, Any] | None = None) -> Any:
    """A value that ``schema`` accepts (``$ref``s resolved against ``root``)."""
    root = root or schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return value_for(target, hints, root)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [option for option in schema[key] if option.get("type") != "null"]
            return value_for(options[0], hints, root) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: value_for(prop, hints, root) for name, prop in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [value_for(schema["items"], hints, root)] if schema.get("minItems") and "items" in schema else []
    scalars = {"integer": hints.number, "number": hints.number, "boolean": lambda: True, "null": lambda: None}
    return scalars.get(kind, hints.string)()
