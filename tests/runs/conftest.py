"""Fixtures for driving runs in-process: a scripted provider in place of the model and
readers of what a run wrote (PostgreSQL and the session's Redis Stream). The Celery tasks
recorded instead of sent (``enqueued``) are in ``tests/conftest.py``, for every app's tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest

from genie.connections import redis_client
from runs import loop
from runs.events import stream_key
from runs.models import Run, RunEvent
from runs.providers import Chunk, ProviderError, ProviderRequest, ToolCallDelta

# A script item: a Chunk to yield, an exception to raise, or a callable to run (a side
# effect at that point of the stream, such as a stop request).
ScriptItem = Chunk | ProviderError | Callable[[], None]


@dataclass
class ScriptedProvider:
    """Answers each model call with the next script; records every request."""

    scripts: list[list[ScriptItem]]
    requests: list[ProviderRequest] = field(default_factory=list)
    name: str = "scripted"
    supports_tools: bool = True

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        for item in self.scripts.pop(0):
            if isinstance(item, Chunk):
                yield item
            elif isinstance(item, ProviderError):
                raise item
            else:
                item()


def text(*pieces: str) -> list[Chunk]:
    return [Chunk(text=piece) for piece in pieces]


def tool_call(name: str, arguments: str, *, index: int = 0, call_id: str = "prov-1") -> list[Chunk]:
    """A tool call streamed as OpenAI does: id and name first, the arguments in two pieces."""
    half = len(arguments) // 2
    return [
        Chunk(tool_calls=(ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments[:half]),)),
        Chunk(tool_calls=(ToolCallDelta(index=index, arguments=arguments[half:]),)),
        Chunk(finish_reason="tool_calls"),
    ]


@pytest.fixture
def script() -> Iterator[Callable[..., ScriptedProvider]]:
    """``script([...], [...])``: the model's replies, one list per model call."""
    with mock.patch.object(loop, "get_provider") as get_provider:

        def install(*replies: list[ScriptItem]) -> ScriptedProvider:
            provider = ScriptedProvider(list(replies))
            get_provider.return_value = provider
            return provider

        yield install


@pytest.fixture
def fast_settings(settings):
    settings.GENIE_STOP_POLL_INTERVAL = 0
    settings.GENIE_PROVIDER_RETRY_BACKOFF = 0.001
    settings.GENIE_EVENT_FLUSH_INTERVAL = 0
    return settings


def stored_events(run: Run) -> list[tuple[str, dict[str, Any]]]:
    return [(event.type, event.data) for event in RunEvent.objects.filter(run=run).order_by("seq")]


def stored_types(run: Run) -> list[str]:
    return [type_ for type_, _ in stored_events(run)]


def published_types(run: Run) -> list[str]:
    """The run's events as the session's Redis Stream has them (what live clients got)."""
    entries = redis_client().xrange(stream_key(str(run.session.uuid)))
    return [fields[b"t"].decode() for _, fields in entries if fields[b"r"].decode() == str(run.uuid)]


def published_ids(run: Run) -> list[int]:
    entries = redis_client().xrange(stream_key(str(run.session.uuid)))
    return [int(entry_id.decode().split("-")[0]) for entry_id, _ in entries]


def published_data(run: Run, type_: str) -> list[dict[str, Any]]:
    entries = redis_client().xrange(stream_key(str(run.session.uuid)))
    return [json.loads(fields[b"d"]) for _, fields in entries if fields[b"t"].decode() == type_]
