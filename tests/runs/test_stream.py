"""The seed's flow over real HTTP: Daphne, a Celery worker, Redis, PostgreSQL, a fake LLM."""

from __future__ import annotations

import pytest

from chat.models import Message
from runs.models import Run, RunEvent

pytestmark = pytest.mark.live


def test_session_streams_reply_and_stores_it(live):
    live.script([("delay", 0.3), ("text", "Miso, "), ("text", "Juniper, Nimbus, Pickles, and Poppy.")])
    created = live.start_session("Generate 5 random cat names")

    read = live.read_stream(created["stream_url"])

    assert read.status == 200
    assert read.headers["content-type"] == "text/event-stream"
    assert read.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert read.headers["cache-control"] == "no-cache"
    assert read.comments[0] == "ok"
    assert read.retry == "0"
    assert read.types == ["start", "text-start", "text-delta", "text-delta", "text-end", "finish"]
    assert read.ids == sorted(read.ids) and len(set(read.ids)) == len(read.ids)
    agent_message = Message.objects.get(session__uuid=created["uuid"], sender_role="agent")
    assert read.events[1].data["id"] == f"pending-message-{agent_message.uuid}"
    assert read.text == "Miso, Juniper, Nimbus, Pickles, and Poppy."
    assert agent_message.text == read.text
    assert agent_message.status == Message.Status.COMPLETE
    run = Run.objects.get(uuid=created["run_uuid"])
    assert run.status == Run.Status.SUCCEEDED
    assert list(RunEvent.objects.filter(run=run).values_list("seq", flat=True)) == read.ids


def test_reconnect_after_finish_is_204(live):
    live.script([("delay", 0.3), ("text", "Hi")])
    created = live.start_session()
    read = live.read_stream(created["stream_url"])

    again = live.read_stream(created["stream_url"], last_event_id=read.ids[-1])
    fresh = live.read_stream(created["stream_url"])

    assert again.status == 204
    assert fresh.status == 204
