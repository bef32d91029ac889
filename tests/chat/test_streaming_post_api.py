"""A POST asking for its turn's stream, in process: what is written, and the cap on
open streams checked before anything is."""

from __future__ import annotations

import pytest

from chat.models import Session, hash_client_secret
from genie.models import AccessToken
from genie.services import create_access_token
from runs.handoff import HANDOFF_HEADER, take_handoff
from runs.models import Run
from tests.conftest import bearer_client
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def test_a_streaming_post_hands_its_turn_to_the_relay(api):
    response = api.post("/api/v1/sessions", {"text": "Hi"}, format="json", HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 200
    run = Run.objects.get(uuid=response["Genie-Run-Uuid"])
    assert response["Genie-Session-Uuid"] == str(run.session.uuid)
    assert response["Genie-Message-Uuid"] == str(run.agent_message.uuid)
    plan, wire = take_handoff(response[HANDOFF_HEADER.decode()])
    assert plan.run_filter == plan.close_after_run == str(run.uuid)
    assert wire.name == "ui-message"


def test_at_the_stream_cap_a_streaming_post_is_429_and_writes_nothing(api, settings):
    settings.GENIE_MAX_STREAMS_PER_KEY = 1
    api.post("/api/v1/sessions", {"text": "One"}, format="json", HTTP_ACCEPT="text/event-stream")

    refused = api.post("/api/v1/sessions", {"text": "Two"}, format="json", HTTP_ACCEPT="text/event-stream")

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert Session.objects.count() == 1


def test_a_refused_streaming_post_gives_its_slot_back(api, settings):
    settings.GENIE_MAX_STREAMS_PER_KEY = 1

    bad = api.post("/api/v1/sessions", {"text": ""}, format="json", HTTP_ACCEPT="text/event-stream")
    good = api.post("/api/v1/sessions", {"text": "Hi"}, format="json", HTTP_ACCEPT="text/event-stream")

    assert bad.status_code == 400
    assert bad["Content-Type"] == "application/json"
    assert good.status_code == 200


def test_a_publishable_keys_streaming_post_carries_its_new_sessions_secret(team):
    AgentFactory(team=team, handle="public", is_public=True)
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)
    client = bearer_client(key)

    response = client.post(
        "/api/v1/sessions", {"text": "Hi", "agent": "public"}, format="json", HTTP_ACCEPT="text/event-stream"
    )

    assert response.status_code == 200
    session = Session.objects.get(uuid=response["Genie-Session-Uuid"])
    assert session.client_secret_hash == hash_client_secret(response["Genie-Client-Secret"])
