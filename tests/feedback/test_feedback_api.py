from __future__ import annotations

import pytest

from feedback.models import Feedback
from tests.factories import MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reply(member, agent):
    session = SessionFactory(agent=agent, owner=member.user)
    return MessageFactory(session=session, sender_role="agent", text="Miso")


def url(message) -> str:
    return f"/api/v1/sessions/{message.session.uuid}/messages/{message.uuid}/feedback"


def test_create_then_replace_feedback(api, reply):
    created = api.post(url(reply), {"rating": "positive", "body": "Accurate"}, format="json")
    replaced = api.post(url(reply), {"rating": "negative", "body": "Wrong"}, format="json")

    assert created.status_code == 201
    body = created.json()
    assert body["url"] == f"http://testserver{url(reply)}"
    assert body["session_uuid"] == str(reply.session.uuid)
    assert body["message_uuid"] == str(reply.uuid)
    assert (body["rating"], body["body"]) == ("positive", "Accurate")
    assert "created_at" in body
    assert replaced.status_code == 200
    assert Feedback.objects.get().rating == "negative"


def test_get_and_delete_feedback(api, reply):
    api.post(url(reply), {"rating": "positive"}, format="json")

    got = api.get(url(reply))
    deleted = api.delete(url(reply))
    gone = api.get(url(reply))

    assert got.status_code == 200
    assert got.json()["rating"] == "positive"
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert api.delete(url(reply)).status_code == 404


def test_feedback_on_a_user_message_is_400(api, reply):
    user_message = MessageFactory(session=reply.session, sender_role="user")

    response = api.post(url(user_message), {"rating": "positive"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_an_agent_message"
    assert not Feedback.objects.exists()


def test_invalid_rating_is_400(api, reply):
    response = api.post(url(reply), {"rating": "meh"}, format="json")

    assert response.status_code == 400
    assert "rating" in response.json()["error"]["details"]
