from __future__ import annotations

import pytest

from chat.models import Message
from runs.models import Run
from tests.factories import FeedbackFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(member, agent):
    return SessionFactory(agent=agent, owner=member.user)


def test_post_message_returns_the_agent_message_uuid(api, session, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(f"/api/v1/sessions/{session.uuid}/messages", {"text": "more please"}, format="json")

    assert response.status_code == 201
    body = response.json()
    agent_message = Message.objects.get(uuid=body["uuid"])
    assert agent_message.sender_role == "agent"
    assert agent_message.status == "pending"
    assert body["stream_url"] == f"http://testserver/api/v1/sessions/{session.uuid}/stream"
    assert Run.objects.get(uuid=body["run_uuid"]).agent_message == agent_message
    assert len(callbacks) == 1


def test_post_message_while_a_run_is_active_is_409(api, session):
    first = api.post(f"/api/v1/sessions/{session.uuid}/messages", {"text": "one"}, format="json").json()

    response = api.post(f"/api/v1/sessions/{session.uuid}/messages", {"text": "two"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_active"
    assert response.json()["error"]["details"]["run_uuid"] == first["run_uuid"]
    assert session.messages.count() == 2


def test_transcript_is_oldest_first_with_model_and_feedback(api, session):
    user = MessageFactory(session=session, text="Generate 5 random cat names", metadata={"source": "api-docs"})
    reply = MessageFactory(session=session, sender_role="agent", text="Miso", model_id="m", temperature=0.5)
    FeedbackFactory(message=reply, rating="positive", body="Accurate")

    body = api.get(f"/api/v1/sessions/{session.uuid}/messages").json()

    assert body["count"] == 2
    assert body["next"] is None
    assert body["previous"] is None
    first, second = body["results"]
    assert first["uuid"] == str(user.uuid)
    assert first["url"] == f"http://testserver/api/v1/sessions/{session.uuid}/messages/{user.uuid}"
    assert first["session_uuid"] == str(session.uuid)
    assert first["feedback"] is None
    assert first["sender_role"] == "user"
    assert first["metadata"] == {"source": "api-docs"}
    assert second["model"] == {"provider": "openai", "model_id": "m"}
    assert second["temperature"] == 0.5
    assert second["feedback"]["rating"] == "positive"
    assert second["feedback"]["body"] == "Accurate"
    assert second["feedback_url"].endswith(f"/messages/{reply.uuid}/feedback")
    assert second["status"] == "complete"


def test_transcript_pagination_links_walk_every_message(api, session):
    made = [MessageFactory(session=session) for _ in range(5)]

    seen, url = [], f"/api/v1/sessions/{session.uuid}/messages?page_size=2"
    while url:
        page = api.get(url).json()
        seen += [m["uuid"] for m in page["results"]]
        url = page["next"]

    assert seen == [str(m.uuid) for m in made]


@pytest.mark.parametrize(
    "query", ["page=0", "page=abc", "page_size=0", "page_size=101", "page=99999999999999999999", "page=3"]
)
def test_out_of_range_pagination_is_400(api, session, query):
    MessageFactory(session=session)

    response = api.get(f"/api/v1/sessions/{session.uuid}/messages?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_transcript_queries_do_not_grow_with_messages(api, session, django_assert_max_num_queries):
    for _ in range(20):
        FeedbackFactory(message=MessageFactory(session=session, sender_role="agent"))

    with django_assert_max_num_queries(6):  # +1: the agent messages' tool calls, one query for all
        assert api.get(f"/api/v1/sessions/{session.uuid}/messages").status_code == 200
