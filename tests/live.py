"""Helpers for tests against the live stack: real HTTP, real SSE."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from chat.models import Agent
from genie.models import AccessToken
from genie.services import create_access_token
from runs.models import Run
from tests.factories import AgentFactory, MemberFactory
from tests.fakellm import FakeLLM, Step


@dataclass
class SSEEvent:
    id: int
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return self.data["type"]


@dataclass
class StreamRead:
    status: int
    headers: httpx.Headers
    events: list[SSEEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: str | None = None
    body: bytes = b""  # an answer that is not a stream (an error)

    @property
    def types(self) -> list[str]:
        return [event.type for event in self.events]

    @property
    def ids(self) -> list[int]:
        return [event.id for event in self.events]

    @property
    def text(self) -> str:
        return "".join(e.data["delta"] for e in self.events if e.type == "text-delta")


@dataclass
class LiveStack:
    base_url: str
    fake_llm: FakeLLM
    key: str
    agent: Agent

    @classmethod
    def create(cls, *, base_url: str, fake_llm: FakeLLM) -> LiveStack:
        member = MemberFactory()
        _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PERSONAL, user=member.user)
        agent = AgentFactory(
            team=member.team, is_default=True, base_url=fake_llm.base_url, model=f"script-{uuid.uuid4().hex[:10]}"
        )
        return cls(base_url=base_url, fake_llm=fake_llm, key=key, agent=agent)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def script(self, *replies: list[Step], agent: Agent | None = None) -> None:
        self.fake_llm.script((agent or self.agent).model, *replies)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.base_url}/api/v1/{path}", headers=headers, timeout=30, **kwargs)

    def start_session(self, text: str = "Hello", **body: Any) -> dict[str, Any]:
        response = self.api("POST", "sessions", json={"text": text, **body})
        assert response.status_code == 201, response.text
        return response.json()

    def warm_up(self) -> None:
        """One finished turn first: a call that waits for its reply must not pay a fresh
        worker's start-up (its first turn can take longer than the live stack's 3-second
        GENIE_SYNC_TIMEOUT on a loaded machine). Titled: no title task asks the model."""
        self.wait_run(self.start_session("Warm up", title="Warm-up")["run_uuid"])

    def openai_client(self) -> openai.OpenAI:
        """The ``openai`` package's client of this stack's ``/v1`` (no retries: a test sees
        every answer as it came)."""
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self.key, max_retries=0, timeout=30)

    def read_stream(
        self,
        url: str,
        *,
        last_event_id: int | None = None,
        max_events: int | None = None,
        timeout: float = 30,
        headers: dict[str, str] | None = None,
        until: str | None = None,
        method: str = "GET",
        json: dict[str, Any] | None = None,
    ) -> StreamRead:
        """Read an SSE stream until the server closes it, or disconnect after ``max_events``
        or after the first event of type ``until``. ``method`` and ``json``: a POST that
        answers with its turn's stream."""
        headers = {**(headers or self.headers), "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        with httpx.stream(method, url, headers=headers, timeout=timeout, json=json) as response:
            read = StreamRead(status=response.status_code, headers=response.headers)
            if response.status_code != 200:
                read.body = response.read()
                return read
            block: list[str] = []
            for line in response.iter_lines():
                if line:
                    block.append(line)
                    continue
                self._parse_block(block, read)
                block = []
                if max_events is not None and len(read.events) >= max_events:
                    break
                if until is not None and read.events and read.events[-1].type == until:
                    break
        return read

    def read_until_finish(self, url: str, *, last_event_id: int, timeout: float = 30) -> StreamRead:
        """A client that resumes with Last-Event-ID whenever its stream ends before the
        run's ``finish`` (as after a Redis restart), until ``finish`` or a 204."""
        deadline = time.monotonic() + timeout
        whole = StreamRead(status=200, headers=httpx.Headers())
        while time.monotonic() < deadline:
            try:
                read = self.read_stream(url, last_event_id=last_event_id, timeout=max(deadline - time.monotonic(), 1))
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            whole.events += read.events
            whole.comments += read.comments
            if read.status == 204 or (read.events and read.events[-1].type == "finish"):
                return whole
            if read.events:
                last_event_id = read.events[-1].id
            time.sleep(0.2 if read.status == 200 else 0.5)
        raise TimeoutError(f"no finish on {url}")

    @staticmethod
    def _parse_block(block: list[str], read: StreamRead) -> None:
        event_id, data = None, None
        for line in block:
            if line.startswith(":"):
                read.comments.append(line[1:].strip())
            elif line.startswith("retry:"):
                read.retry = line.split(":", 1)[1].strip()
            elif line.startswith("id:"):
                event_id = int(line.split(":", 1)[1])
            elif line.startswith("data:") and line.split(":", 1)[1].strip() != "[DONE]":  # the AI SDK's end mark
                data = json.loads(line.split(":", 1)[1])
        if data is not None:
            read.events.append(SSEEvent(event_id, data))

    def wait_run(self, run_uuid: str, timeout: float = 30) -> Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = Run.objects.select_related("agent_message").get(uuid=run_uuid)
            if run.is_finished:
                return run
            time.sleep(0.05)
        raise TimeoutError(f"run {run_uuid} did not finish")
