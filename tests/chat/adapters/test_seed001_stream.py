"""Seed 001's run stream through the ASGI application, in-process: ids a client resumes
from, and the time of each event."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from genie.asgi import application
from runs import services as run_services
from runs.models import Run, RunEvent
from tests.factories import RunFactory, SessionFactory

# The relay reads the database on the executor's threads: the data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


def read(path: str, **headers: str) -> tuple[int, list[dict[str, str]]]:
    """GET ``path`` through the ASGI application; the status and the SSE events as dicts."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()],
    }
    incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async_to_sync(application)(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:]).decode()
    events = [
        dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":") and ": " in line)
        for block in body.split("\n\n")
    ]
    return sent[0]["status"], [event for event in events if "event" in event]


@pytest.fixture
def finished_run(agent, member):
    run = RunFactory(session=SessionFactory(agent=agent, owner=member.user))
    run_services.end_run(run=run, status=Run.Status.SUCCEEDED, text="All done.")
    return run


def test_a_resume_between_agent_message_and_processing_finished_delivers_the_latter(finished_run, agent, personal_key):
    path = (
        f"/api/v1/genies/{agent.handle}/chat/conversations/{finished_run.session.uuid}/genie-runs/{finished_run.uuid}"
    )
    auth = f"Bearer {personal_key}"

    status, events = read(path, authorization=auth)
    message = next(event for event in events if event["event"] == "agent.message")
    status_after, rest = read(path, authorization=auth, last_event_id=message["id"])
    status_at_end, _ = read(path, authorization=auth, last_event_id=events[-1]["id"])

    assert status == 200
    assert [event["event"] for event in events][-2:] == ["agent.message", "processing.finished"]
    assert len({event["id"] for event in events}) == len(events)
    assert status_after == 200
    assert [event["event"] for event in rest] == ["processing.finished"]
    assert rest[0]["id"] == events[-1]["id"]
    assert status_at_end == 204


def test_every_streamed_event_has_the_time_it_was_stored(finished_run, agent, personal_key):
    path = (
        f"/api/v1/genies/{agent.handle}/chat/conversations/{finished_run.session.uuid}/genie-runs/{finished_run.uuid}"
    )

    _, events = read(path, authorization=f"Bearer {personal_key}")

    finish = RunEvent.objects.get(run=finished_run, type="finish")
    stored = finish.created_at.isoformat().replace("+00:00", "Z")
    assert json.loads(events[-1]["data"])["created_at"] == stored  # what since_created_at compares with
    assert all(json.loads(event["data"])["created_at"].endswith("Z") for event in events)
