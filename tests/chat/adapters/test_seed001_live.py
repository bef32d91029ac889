"""Seed 001's example flow over real HTTP: a real Daphne, a real Celery worker (the run
pauses for the skill confirmation and continues in a new task), the scripted model and a
real webhook receiving the approved skill call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from runs.models import Run, RunEvent

pytestmark = pytest.mark.live


@dataclass
class SeedEvent:
    id: str  # the SSE id, echoed as Last-Event-ID (``<seq>``, or ``<seq>.<i>`` for all but an event's last frame)
    name: str
    data: dict[str, Any]


@dataclass
class SeedStream:
    status: int
    headers: httpx.Headers
    events: list[SeedEvent] = field(default_factory=list)
    body: bytes = b""

    @property
    def names(self) -> list[str]:
        return [event.name for event in self.events]

    def first(self, name: str) -> SeedEvent:
        return next(event for event in self.events if event.name == name)

    @property
    def deltas(self) -> str:
        return "".join(e.data["delta"] for e in self.events if e.name == "agent.message.delta")


def read_seed_stream(
    method: str, url: str, *, headers: dict[str, str], json_body: Any = None, on_event: Any = None
) -> SeedStream:
    """Read an SSE stream of named events to its end; ``on_event(event)`` runs on each
    event while the stream stays open (to answer a confirmation mid-stream)."""
    with httpx.stream(method, url, headers=headers, json=json_body, timeout=30) as response:
        read = SeedStream(status=response.status_code, headers=response.headers)
        if response.status_code != 200:
            read.body = response.read()
            return read
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if "event" in fields:
                event = SeedEvent(fields["id"], fields["event"], json.loads(fields["data"]))
                read.events.append(event)
                if on_event is not None:
                    on_event(event)
            fields = {}
    return read


def test_the_documents_flow_end_to_end(live, receiver):
    live.agent.tools = [
        {"name": "refund", "kind": "webhook", "url": receiver.url, "requires_approval": True},
    ]
    live.agent.save()
    receiver.secret = live.agent.webhook_secret
    live.script(
        [("tool_call", {"id": "a", "name": "refund", "arguments": '{"order": 7}'})],
        [("text", "Refunded "), ("text", "order "), ("delay", 0.1), ("text", "7.")],
    )
    genie = f"{live.base_url}/api/v1/genies/{live.agent.handle}/chat"

    # 1. Create a conversation.
    created = httpx.post(f"{genie}/conversations", headers=live.headers, json={"title": "Refunds"})
    conversation_id = created.json()["conversation_id"]
    base = f"{genie}/conversations/{conversation_id}"

    # 2-3. Send with stream: true; approve the skill on its confirmation, on the open stream.
    decisions: list[httpx.Response] = []

    def approve(event: SeedEvent) -> None:
        if event.name == "skill.confirmation_required":
            url = f"{base}/skill_approval/{event.data['call_id']}"
            decisions.append(httpx.post(url, headers=live.headers, json={"approved": True}))

    sent = read_seed_stream(
        "POST",
        f"{base}/messages",
        headers=live.headers,
        json_body={"text": "Refund order 7", "stream": True},
        on_event=approve,
    )

    run_id = sent.headers["genie-run-id"]
    assert created.status_code == 201
    assert created.json()["genie_handle"] == live.agent.handle
    assert sent.status == 200
    assert sent.events[0].name == "processing.started"
    assert sent.events[0].data["genie_run_id"] == run_id
    assert sent.names == [
        "processing.started",
        "skill.called",
        "skill.confirmation_required",
        "skill.confirmation_resolved",
        "skill.completed",
        "agent.message.delta",
        "agent.message.delta",
        "agent.message.delta",
        "agent.message",
        "processing.finished",
    ]
    assert [d.json() for d in decisions] == [
        {
            "call_id": sent.first("skill.confirmation_required").data["call_id"],
            "status": "approved",
            "conversation_id": conversation_id,
            "genie_handle": live.agent.handle,
        }
    ]
    assert len(receiver.calls) == 1
    assert sent.first("agent.message").data["text"] == sent.deltas == "Refunded order 7."
    assert sent.first("processing.finished").data == {
        "genie_run_id": run_id,
        "status": "succeeded",
        "created_at": sent.first("processing.finished").data["created_at"],
    }
    assert len({event.id for event in sent.events}) == len(sent.events)  # every event its own id
    stamps = [datetime.fromisoformat(event.data["created_at"]) for event in sent.events]
    assert stamps == sorted(stamps)
    assert sent.headers["location"] == f"{base}/genie-runs/{run_id}"

    # 4. Reconnect to the run after the second token: the rest, and the whole reply at the end.
    second_delta = [e for e in sent.events if e.name == "agent.message.delta"][1]
    resumed = read_seed_stream(
        "GET", f"{base}/genie-runs/{run_id}", headers={**live.headers, "Last-Event-ID": second_delta.id}
    )
    done = httpx.get(f"{base}/genie-runs/{run_id}", headers={**live.headers, "Last-Event-ID": sent.events[-1].id})

    assert resumed.status == 200
    assert resumed.names == ["agent.message.delta", "agent.message", "processing.finished"]
    assert resumed.deltas == "7."
    assert resumed.first("agent.message").data["text"] == "Refunded order 7."
    assert [e.id for e in resumed.events] == [e.id for e in sent.events[-3:]]
    assert done.status_code == 204

    # 5. Events since a time: those stored after the confirmation.
    confirmation = RunEvent.objects.get(run__uuid=run_id, type="data-approval-required")
    query = {"conversation_id": conversation_id, "since_created_at": confirmation.created_at.isoformat()}
    since = httpx.get(f"{genie}/conversations/events", headers=live.headers, params=query).json()
    every = httpx.get(f"{genie}/conversations/events", headers=live.headers, params=query | {"since_created_at": ""})

    names = [event["event"] for event in since["results"]]
    assert "skill.confirmation_required" not in names
    assert names[-2:] == ["agent.message", "processing.finished"]
    assert since["results"][-2]["data"]["text"] == "Refunded order 7."
    assert every.status_code == 400  # a blank time is not a time
    assert every.json()["errors"][0]["field"] == "since_created_at"

    # 6. History, here and through the canonical API: one conversation, one session.
    history = httpx.get(f"{base}/messages", headers=live.headers).json()["results"]
    canonical = live.api("GET", f"sessions/{conversation_id}/messages").json()["results"]

    assert [(m["role"], m["text"]) for m in history] == [("user", "Refund order 7"), ("agent", "Refunded order 7.")]
    assert history[1]["genie_run_id"] == run_id
    assert [m["text"] for m in canonical] == [m["text"] for m in history]
    assert Run.objects.get(uuid=run_id).status == Run.Status.SUCCEEDED


def test_a_run_stream_of_another_genie_or_without_a_key_is_refused_in_the_seeds_voice(live):
    live.script([("text", "Hi.")])
    genie = f"{live.base_url}/api/v1/genies/{live.agent.handle}/chat"
    conversation_id = httpx.post(f"{genie}/conversations", headers=live.headers, json={}).json()["conversation_id"]
    sent = httpx.post(
        f"{genie}/conversations/{conversation_id}/messages", headers=live.headers, json={"text": "Hello"}
    ).json()
    path = f"conversations/{conversation_id}/genie-runs/{sent['genie_run_id']}"

    other = httpx.get(f"{live.base_url}/api/v1/genies/someone-else/chat/{path}", headers=live.headers)
    anonymous = httpx.get(f"{genie}/{path}", headers={"Authorization": "Bearer sk_live_wrong"})
    whole = read_seed_stream("GET", f"{genie}/{path}", headers=live.headers)

    assert other.status_code == 404
    assert other.json()["status"] == 404
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert whole.names[0] == "processing.started"
    assert whole.names[-2:] == ["agent.message", "processing.finished"]
