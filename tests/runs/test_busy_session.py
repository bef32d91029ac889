"""A message sent while a run is active: 409 by default, or enqueue, or interrupt."""

from __future__ import annotations

import pytest

from runs.models import Run

pytestmark = pytest.mark.live


def slow_reply(text: str) -> list:
    return [("delay", 0.2), ("text", text), *[("delay", 0.05), ("text", ".")] * 20]


def test_default_is_409_naming_the_active_run(live):
    live.script(slow_reply("first"))
    created = live.start_session()

    response = live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "again"})

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "run_active"
    assert error["details"]["run_uuid"] == created["run_uuid"]
    assert error["details"]["stream_url"] == created["stream_url"]


def test_enqueue_runs_after_the_current_one_in_order(live):
    live.script(slow_reply("first"), [("text", "second")])
    created = live.start_session()

    queued = live.api(
        "POST", f"sessions/{created['uuid']}/messages", json={"text": "again", "on_active_run": "enqueue"}
    )
    read = live.read_stream(created["stream_url"])

    assert queued.status_code == 201
    assert read.types.count("finish") == 2
    first, second = live.wait_run(created["run_uuid"]), live.wait_run(queued.json()["run_uuid"])
    assert first.status == second.status == Run.Status.SUCCEEDED
    assert first.finished_at <= second.started_at
    assert second.agent_message.text == "second"
    prompt = live.fake_llm.turn_requests(live.agent.model)[-1]["messages"]
    assert [m["content"] for m in prompt if m["role"] == "assistant"] == [first.agent_message.text]


def test_interrupt_stops_the_current_run_keeping_its_text(live):
    live.script(slow_reply("first"), [("text", "second")])
    created = live.start_session()
    live.read_stream(created["stream_url"], max_events=3)

    response = live.api(
        "POST", f"sessions/{created['uuid']}/messages", json={"text": "stop that", "on_active_run": "interrupt"}
    )
    second = live.wait_run(response.json()["run_uuid"])
    first = live.wait_run(created["run_uuid"])

    assert response.status_code == 201
    assert first.status == Run.Status.STOPPED
    assert first.agent_message.text.startswith("first")
    assert second.status == Run.Status.SUCCEEDED
    assert second.agent_message.text == "second"
