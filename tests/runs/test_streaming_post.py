"""A POST that answers with its turn's stream (``Accept: text/event-stream``), over real
HTTP: the same durable, resumable run as a POST then a GET."""

from __future__ import annotations

import uuid

import pytest

from chat.models import Message, Session
from runs.models import Run

pytestmark = pytest.mark.live

TURN = ["start", "start-step", "text-start", "text-delta", "text-delta", "text-end", "finish-step", "finish"]


def test_post_session_answers_with_the_turns_stream(live):
    live.script([("delay", 0.2), ("text", "Miso, "), ("text", "Juniper.")])

    read = live.read_stream(f"{live.base_url}/api/v1/sessions", method="POST", json={"text": "Two cat names"})

    assert read.status == 200
    assert read.headers["content-type"] == "text/event-stream"
    assert read.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert read.types == TURN
    assert read.text == "Miso, Juniper."
    session = Session.objects.get(uuid=read.headers["genie-session-uuid"])
    run = Run.objects.get(uuid=read.headers["genie-run-uuid"], session=session)
    message = Message.objects.get(uuid=read.headers["genie-message-uuid"])
    assert run.agent_message_id == message.pk
    assert message.text == "Miso, Juniper."
    assert read.events[0].data["messageId"] == str(message.uuid)
    assert read.headers["location"].endswith(f"/api/v1/sessions/{session.uuid}/runs/{run.uuid}/stream")
    # The stream is the turn's, finished: the session stream has nothing left to send.
    assert (
        live.read_stream(f"{live.base_url}/api/v1/sessions/{session.uuid}/stream", last_event_id=read.ids[-1]).status
        == 204
    )


def test_a_dropped_post_stream_resumes_on_location(live):
    created = live.start_session("First")
    live.wait_run(created["run_uuid"])
    live.script(
        [("text", "one "), ("delay", 0.5), ("text", "two "), ("text", "three")],
    )
    url = f"{live.base_url}/api/v1/sessions/{created['uuid']}/messages"

    first = live.read_stream(url, method="POST", json={"text": "Count"}, until="text-delta")
    rest = live.read_stream(first.headers["location"], last_event_id=first.ids[-1])

    assert first.types == ["start", "start-step", "text-start", "text-delta"]
    assert first.ids[0] > 1  # the turn's own events, not the session's first run
    assert rest.status == 200
    assert first.types + rest.types == ["start", "start-step", "text-start"] + ["text-delta"] * 3 + TURN[-3:]
    assert first.text + rest.text == "one two three"
    assert len(set(first.ids + rest.ids)) == len(first.ids + rest.ids)


def test_an_idempotent_retry_replays_the_stream_and_creates_nothing(live):
    live.script([("text", "Only once.")])
    key = {**live.headers, "Idempotency-Key": uuid.uuid4().hex}
    url = f"{live.base_url}/api/v1/sessions"

    first = live.read_stream(url, method="POST", json={"text": "Once"}, headers=key)
    again = live.read_stream(url, method="POST", json={"text": "Once"}, headers=key)

    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["genie-run-uuid"] == first.headers["genie-run-uuid"]
    assert again.ids == first.ids
    assert again.text == first.text == "Only once."
    assert Session.objects.filter(agent=live.agent).count() == 1


def test_bad_input_is_a_json_error_and_stores_nothing(live):
    before = Session.objects.count()

    read = live.read_stream(f"{live.base_url}/api/v1/sessions", method="POST", json={"text": ""})

    assert read.status == 400
    assert read.headers["content-type"] == "application/json"
    assert b'"code"' in read.body
    assert Session.objects.count() == before
