from __future__ import annotations

import pytest

from chat.models import Message, Session
from runs.models import Run
from tests.factories import AgentFactory, MessageFactory, SessionFactory

pytestmark = pytest.mark.django_db


def test_create_session_writes_session_messages_and_queued_run(api, agent, member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(
            "/api/v1/sessions",
            {"text": "Generate 5 random cat names", "title": "", "metadata": {"source": "api-docs"}},
            format="json",
        )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"uuid", "stream_url", "messages_url", "run_uuid", "run_url"}
    assert body["stream_url"] == f"http://testserver/api/v1/sessions/{body['uuid']}/stream"
    assert body["messages_url"] == f"http://testserver/api/v1/sessions/{body['uuid']}/messages"
    session = Session.objects.get(uuid=body["uuid"])
    assert session.owner == member.user
    assert session.team == member.team
    assert session.agent == agent
    user_message, agent_message = session.messages.order_by("created_at", "id")
    assert (user_message.sender_role, user_message.text) == ("user", "Generate 5 random cat names")
    assert (agent_message.sender_role, agent_message.status) == ("agent", Message.Status.PENDING)
    run = Run.objects.get(uuid=body["run_uuid"])
    assert run.status == Run.Status.QUEUED
    assert run.agent_message == agent_message
    assert len(callbacks) == 1  # the task is enqueued on commit, once


def test_create_session_with_agent_handle(api, team):
    other = AgentFactory(team=team, handle="support")

    response = api.post("/api/v1/sessions", {"text": "hi", "agent": "support"}, format="json")

    assert response.status_code == 201
    assert Session.objects.get(uuid=response.json()["uuid"]).agent == other


def test_create_session_with_unknown_agent_is_400_and_stores_nothing(api):
    response = api.post("/api/v1/sessions", {"text": "hi", "agent": "nope"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "agent" in response.json()["error"]["details"]
    assert not Session.objects.exists()


def test_fields_a_caller_may_not_set_are_rejected(api):
    response = api.post("/api/v1/sessions", {"text": "hi", "team": 1, "owner": 2, "status": "complete"}, format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) == {"owner", "status", "team"}
    assert not Session.objects.exists()


def test_text_over_the_limit_is_413(api, settings):
    settings.GENIE_MAX_MESSAGE_CHARS = 10

    response = api.post("/api/v1/sessions", {"text": "x" * 11}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "text_too_long"
    assert not Session.objects.exists()


def test_blank_or_missing_text_is_400(api):
    assert api.post("/api/v1/sessions", {"text": "  "}, format="json").status_code == 400
    assert api.post("/api/v1/sessions", {}, format="json").status_code == 400


def test_session_detail_in_the_seed_shape(api, member, agent):
    session = SessionFactory(
        agent=agent, owner=member.user, title="5 random cat names", metadata={"source": "api-docs"}
    )

    body = api.get(f"/api/v1/sessions/{session.uuid}").json()

    assert body["uuid"] == str(session.uuid)
    assert body["url"] == f"http://testserver/api/v1/sessions/{session.uuid}"
    assert body["title"] == "5 random cat names"
    assert body["user"] == {"uuid": str(member.uuid), "name": "Human User"}
    assert body["messages_url"].endswith(f"/sessions/{session.uuid}/messages")
    assert body["metadata"] == {"source": "api-docs"}
    assert {"created_at", "updated_at"} <= set(body)


def test_detail_include_messages(api, member, agent):
    session = SessionFactory(agent=agent, owner=member.user)
    MessageFactory.create_batch(2, session=session)

    body = api.get(f"/api/v1/sessions/{session.uuid}?include=messages").json()

    assert len(body["messages"]) == 2


def test_list_is_own_sessions_newest_first_and_paginated(api, member, agent, team):
    mine = [SessionFactory(agent=agent, owner=member.user) for _ in range(3)]
    SessionFactory(agent=agent)  # a teammate's: not listed

    page = api.get("/api/v1/sessions?page_size=2").json()
    second = api.get(page["next"]).json()

    assert page["count"] == 3
    assert [s["uuid"] for s in page["results"] + second["results"]] == [str(s.uuid) for s in reversed(mine)]
    assert page["previous"] is None
    assert second["previous"] is not None
    assert second["next"] is None


def test_list_filters_by_agent_user_id_and_search(api, member, agent, team):
    other = AgentFactory(team=team, handle="other")
    SessionFactory(agent=agent, owner=member.user, user_id="u1", title="Cats")
    SessionFactory(agent=other, owner=member.user, user_id="u2", title="Dogs")

    assert [s["title"] for s in api.get("/api/v1/sessions?agent=other").json()["results"]] == ["Dogs"]
    assert [s["title"] for s in api.get("/api/v1/sessions?user_id=u1").json()["results"]] == ["Cats"]
    assert [s["title"] for s in api.get("/api/v1/sessions?search=cat").json()["results"]] == ["Cats"]


def test_list_queries_do_not_grow_with_sessions(api, member, agent, django_assert_max_num_queries):
    for _ in range(10):
        SessionFactory(agent=agent, owner=member.user)

    with django_assert_max_num_queries(5):
        assert api.get("/api/v1/sessions").status_code == 200


def test_patch_renames_and_sets_metadata_only(api, member, agent):
    session = SessionFactory(agent=agent, owner=member.user, title="old")

    response = api.patch(f"/api/v1/sessions/{session.uuid}", {"title": "new", "metadata": {"k": 1}}, format="json")
    refused = api.patch(f"/api/v1/sessions/{session.uuid}", {"agent": "x"}, format="json")

    assert response.status_code == 200
    session.refresh_from_db()
    assert (session.title, session.metadata) == ("new", {"k": 1})
    assert refused.status_code == 400


def test_delete_removes_the_session_and_its_messages(api, member, agent):
    session = SessionFactory(agent=agent, owner=member.user)
    MessageFactory(session=session)

    response = api.delete(f"/api/v1/sessions/{session.uuid}")

    assert response.status_code == 204
    assert not Session.objects.filter(pk=session.pk).exists()
    assert not Message.objects.exists()


def test_list_shows_the_first_user_message_as_the_preview_of_each_chat(api, member, agent):
    untitled = SessionFactory(agent=agent, owner=member.user, title="")
    MessageFactory(session=untitled, text="How do I return a parcel that arrived damaged? " * 4)
    MessageFactory(session=untitled, sender_role="agent", text="Like this.")
    MessageFactory(session=untitled, text="Thanks")
    SessionFactory(agent=agent, owner=member.user, title="Empty")

    listed = api.get("/api/v1/sessions").json()["results"]
    detail = api.get(f"/api/v1/sessions/{untitled.uuid}").json()

    assert [(s["title"], s["preview"]) for s in listed] == [
        ("Empty", ""),
        ("", ("How do I return a parcel that arrived damaged? " * 4)[:100]),
    ]
    assert detail["preview"] == listed[1]["preview"]
