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
from runs.events import StreamEvent, stream_key
from runs.handoff import HANDOFF_HEADER, take_handoff
from runs.models import Run, RunEvent
from runs.providers import Chunk, ProviderError, ProviderRequest, ToolCallDelta
from runs.stream_slots import release_slot_now
from runs.vocabulary import FINISH

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


@dataclass
class Relayed:
    """A streaming POST's answer as its client would read it: headers and body."""

    headers: dict[str, str]
    body: str

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(line[6:]) for line in self.body.splitlines() if line.startswith("data: ")]

    @property
    def ids(self) -> list[int]:
        return [int(line[4:]) for line in self.body.splitlines() if line.startswith("id: ")]


def relayed(response: Any) -> Relayed:
    """A handed-off streaming POST (``runs.handoff``) read in process, as ``HandoffEdge``
    relays it after its run ran (``loop.execute_run``): the placeholder's headers with the
    format's, then the plan's events in its format up to its run's ``finish``, from the
    session's Redis Stream, and PostgreSQL for what was stored and not published (a test's
    transaction commits nothing). The stream's slot is given back, as at a stream's end."""
    plan, wire = take_handoff(response[HANDOFF_HEADER.decode()])
    release_slot_now(*plan.slot)
    headers = {name: value for name, value in response.items() if name.lower() != HANDOFF_HEADER.decode()}
    headers.update({name.decode(): value.decode() for name, value in wire.headers()})
    # The stored backlog first, then what Redis has after it, then what only PostgreSQL has.
    events = list(plan.backlog)
    last = max([plan.after_seq, *(event.seq for event in events)])
    entries = redis_client().xrange(stream_key(plan.session_uuid), min=f"{last + 1}-0")
    events += [StreamEvent.from_stream_entry(entry_id, fields) for entry_id, fields in entries]
    last = max([last, *(event.seq for event in events)])
    stored = RunEvent.objects.filter(session__uuid=plan.session_uuid, seq__gt=last).select_related("run")
    events += [StreamEvent.from_row(row, str(row.run.uuid)) for row in stored.order_by("seq")]
    body, sent = [wire.preamble().decode()], plan.after_seq
    for event in events:
        if event.seq <= sent:
            continue
        sent = event.seq
        if plan.run_filter is None or event.run_uuid == plan.run_filter:
            body.append(wire.frame(event))
        if (event.type == FINISH and event.run_uuid == plan.close_after_run) or wire.ends_after(event):
            break
    return Relayed(headers, "".join(body))
