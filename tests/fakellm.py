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
"""

from __future__ import annotations

import contextlib
import json
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
