"""Seed 002 over real HTTP: a browser widget with a publishable key, and a server waiting
for a synchronous reply."""

from __future__ import annotations

import httpx
import pytest

from genie.models import AccessToken
from genie.services import create_access_token
from runs.models import Run

pytestmark = pytest.mark.live


def test_publishable_key_widget_flow(live):
    _, pk = create_access_token(team=live.agent.team, kind=AccessToken.Kind.PUBLISHABLE)
    live.script([("delay", 0.2), ("text", "Hello from the widget")])
    widget = {"Authorization": f"Bearer {pk}"}

    created = httpx.post(
        f"{live.base_url}/api/v1/sessions", headers=widget, json={"text": "hi", "user_id": "visitor-42"}
    ).json()
    with_secret = {**widget, "X-Session-Secret": created["client_secret"]}
    read = live.read_stream(created["stream_url"], headers=with_secret, last_event_id=0)
    without_secret = live.read_stream(created["stream_url"], headers=widget, last_event_id=0)
    transcript = httpx.get(created["messages_url"], headers=with_secret).json()
    agent_message = transcript["results"][1]
    rated = httpx.post(agent_message["feedback_url"], headers=with_secret, json={"rating": "positive"})
    listing = httpx.get(f"{live.base_url}/api/v1/sessions", headers=widget)

    assert created["client_secret"].startswith("cs_")
    assert read.text == "Hello from the widget"
    assert without_secret.status == 404
    assert agent_message["text"] == "Hello from the widget"
    assert rated.status_code == 201
    assert listing.status_code == 403
    server_view = live.api("GET", "sessions?user_id=visitor-42").json()
    assert server_view["count"] == 0  # a personal token sees only its own user's sessions


def test_synchronous_reply_returns_the_agent_message(live):
    live.script([("delay", 0.2), ("text", "first")], [("delay", 0.3), ("text", "Miso, "), ("text", "Juniper.")])
    created = live.start_session()
    live.wait_run(created["run_uuid"])

    response = live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "more", "stream": False})

    assert response.status_code == 201
    body = response.json()
    assert body["sender_role"] == "agent"
    assert body["text"] == "Miso, Juniper."
    assert body["status"] == "complete"


def test_synchronous_reply_times_out_with_504_naming_the_run(live):
    live.script(
        [("text", "first")],
        [("delay", 1.5), ("text", "la"), ("delay", 1.5), ("text", "t"), ("delay", 1.5), ("text", "e")],
    )
    created = live.start_session()
    live.wait_run(created["run_uuid"])

    response = live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "slow", "stream": False})

    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "run_timeout"
    run = live.wait_run(error["details"]["run_uuid"], timeout=15)  # it went on
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "late"
