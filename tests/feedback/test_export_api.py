"""``GET feedback/export?format=csv|json``: the team's ratings as a file, for a secret key."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Message
from feedback.models import Feedback
from genie.models import AccessToken
from genie.services import create_access_token
from tests.conftest import bearer_client
from tests.factories import AgentFactory, FeedbackFactory, RunFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/feedback/export"


def rated(agent, *, prompt: str, reply: str, rating: str = "positive", body: str = "", model: str = "m-1") -> Feedback:
    run = RunFactory(session__agent=agent, user_message__text=prompt, agent_message__text=reply)
    Message.objects.filter(pk=run.agent_message_id).update(status=Message.Status.COMPLETE, model_id=model)
    return FeedbackFactory(message=run.agent_message, rating=rating, body=body)


def test_csv_export_holds_one_row_per_rating_with_its_message_prompt_agent_and_model(secret_api, agent):
    good = rated(agent, prompt="Name a cat", reply="Miso", body='cute, "short"\nand sweet')
    bad = rated(agent, prompt="Another", reply="Rex", rating="negative", model="m-2")
    rated(AgentFactory(), prompt="other team", reply="hidden")  # another team's: never exported

    response = secret_api.get(URL, {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == [
        "uuid",
        "created_at",
        "rating",
        "body",
        "session_uuid",
        "message_uuid",
        "agent",
        "model",
        "message_text",
        "prompt",
    ]
    assert [row["uuid"] for row in rows] == [str(good.uuid), str(bad.uuid)]  # oldest first
    assert rows[0] | {"uuid": "", "created_at": ""} == {
        "uuid": "",
        "created_at": "",
        "rating": "positive",
        "body": 'cute, "short"\nand sweet',
        "session_uuid": str(good.message.session.uuid),
        "message_uuid": str(good.message.uuid),
        "agent": agent.handle,
        "model": "m-1",
        "message_text": "Miso",
        "prompt": "Name a cat",
    }
    assert (rows[1]["rating"], rows[1]["model"], rows[1]["prompt"]) == ("negative", "m-2", "Another")


def test_json_export_is_the_default_and_holds_the_same_rows(secret_api, agent):
    feedback = rated(agent, prompt="Name a cat", reply="Miso", body="cute")

    as_json = secret_api.get(URL)
    by_accept = secret_api.get(URL, HTTP_ACCEPT="text/csv")

    assert as_json.status_code == 200
    assert as_json["Content-Type"] == "application/json"
    (row,) = as_json.json()
    assert row["uuid"] == str(feedback.uuid)
    assert (row["rating"], row["body"], row["message_text"], row["prompt"]) == (
        "positive",
        "cute",
        "Miso",
        "Name a cat",
    )
    assert by_accept["Content-Type"] == "text/csv; charset=utf-8"


def test_filters_by_rating_agent_model_and_dates(secret_api, agent, team):
    other = AgentFactory(team=team, handle="sales")
    match = rated(agent, prompt="p", reply="match", rating="negative", model="gpt-4o-mini")
    rated(agent, prompt="p", reply="positive one", model="gpt-4o-mini")
    rated(other, prompt="p", reply="other agent", rating="negative", model="gpt-4o-mini")
    rated(agent, prompt="p", reply="other model", rating="negative", model="llama")
    old = rated(agent, prompt="p", reply="old", rating="negative", model="gpt-4o-mini")
    Feedback.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate()

    response = secret_api.get(
        URL,
        {
            "format": "json",
            "rating": "negative",
            "agent": agent.handle,
            "model": "gpt-4o-mini",
            "since": today - timedelta(days=2),
        },
    )
    until = secret_api.get(URL, {"agent": agent.handle, "until": today - timedelta(days=5)})

    assert [row["uuid"] for row in response.json()] == [str(match.uuid)]
    assert [row["message_text"] for row in until.json()] == ["old"]


def test_an_empty_csv_export_still_has_its_header(secret_api):
    response = secret_api.get(URL, {"format": "csv"})

    assert response.status_code == 200
    assert response.content.decode().splitlines() == [
        "uuid,created_at,rating,body,session_uuid,message_uuid,agent,model,message_text,prompt"
    ]


@pytest.mark.parametrize("kind", [AccessToken.Kind.PUBLISHABLE, AccessToken.Kind.PERSONAL])
def test_only_a_secret_key_exports_and_the_refusal_is_json_whatever_the_format(kind, member, agent):
    extra = {"user": member.user} if kind == AccessToken.Kind.PERSONAL else {"allowed_origins": []}
    _, key = create_access_token(team=member.team, kind=kind, **extra)
    rated(agent, prompt="p", reply="r")

    response = bearer_client(key).get(URL, {"format": "csv"})

    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "secret_key_required"


@pytest.mark.parametrize(
    ("query", "field"),
    [({"format": "xlsx"}, "format"), ({"rating": "meh"}, "rating"), ({"since": "yesterday"}, "since")],
)
def test_bad_parameters_are_a_json_400_naming_the_field(secret_api, query, field):
    response = secret_api.get(URL, {**query, **({} if "format" in query else {"format": "csv"})})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()["error"]
    assert body["code"] == "validation_error"
    assert field in body["details"]


def test_no_credentials_is_a_json_401(client):
    response = client.get(URL, {"format": "csv"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
