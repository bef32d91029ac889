from __future__ import annotations

import pytest

from runs.models import ToolCall
from tests.factories import AgentFactory, FeedbackFactory, MessageFactory, RunFactory, SessionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_session_change_page_shows_the_transcript(staff):
    session = SessionFactory(title="Cats")
    MessageFactory(session=session, text="Generate cat names")
    FeedbackFactory(message=MessageFactory(session=session, sender_role="agent", text="Miso"), body="Accurate")

    page = staff.get(f"/admin/chat/session/{session.pk}/change/")

    assert page.status_code == 200
    assert b"Generate cat names" in page.content
    assert b"Miso" in page.content
    assert b"Accurate" in page.content


def test_feedback_list_filters_by_rating_and_links_to_the_rated_message_in_its_conversation(staff):
    good = FeedbackFactory(rating="positive", body="great")
    FeedbackFactory(rating="negative", body="awful")

    page = staff.get("/admin/feedback/feedback/?rating__exact=positive")

    assert page.status_code == 200
    assert b"great" in page.content
    assert b"awful" not in page.content
    link = f"/admin/chat/session/{good.message.session_id}/conversation/#message-{good.message.uuid}"
    assert link.encode() in page.content


@pytest.mark.parametrize(
    "path",
    [
        "/admin/chat/message/?q=Miso",
        "/admin/runs/run/",
        "/admin/chat/agent/",
        "/admin/genie/accesstoken/",
        "/admin/chat/session/?q=Cats",
        "/admin/genie/member/",
    ],
)
def test_review_pages_load(staff, path):
    MessageFactory(text="Miso", session=SessionFactory(title="Cats"))

    assert staff.get(path).status_code == 200


def test_the_transcript_shows_each_tool_call_with_who_decided(staff):
    run = RunFactory()
    call = ToolCall.objects.create(run=run, call_id="call_x", tool_name="refund", input={"order": 7})
    call.mark_approved(decided_by="user:abc", reason="ok")
    call.mark_succeeded({"refunded": True})

    page = staff.get(f"/admin/chat/session/{run.session.pk}/change/")

    assert b"refund" in page.content
    assert b"refunded" in page.content
    assert b"decided by user:abc" in page.content


def test_the_agent_form_refuses_a_bad_tool_definition(staff):
    agent = AgentFactory()
    form = staff.get(f"/admin/chat/agent/{agent.pk}/change/")
    assert form.status_code == 200

    response = staff.post(
        f"/admin/chat/agent/{agent.pk}/change/",
        {
            "team": agent.team.pk,
            "handle": agent.handle,
            "name": agent.name,
            "provider": "openai",
            "model": agent.model,
            "temperature": 0,
            "max_steps": 8,
            "metadata": "{}",
            "tools": '[{"name": "t", "kind": "webhook"}]',
        },
    )

    assert response.status_code == 200  # the form again, with the error
    assert b"needs a url" in response.content
    agent.refresh_from_db()
    assert agent.tools == []


def test_the_agent_form_never_shows_the_provider_key_and_keeps_it_when_left_blank(staff):
    agent = AgentFactory(api_key="sk-provider-secret", base_url="https://models.example/v1")
    fields = {
        "team": agent.team.pk,
        "handle": agent.handle,
        "name": agent.name,
        "provider": "openai",
        "model": agent.model,
        "base_url": agent.base_url,
        "temperature": 0,
        "max_steps": 8,
        "metadata": "{}",
        "tools": "[]",
    }

    page = staff.get(f"/admin/chat/agent/{agent.pk}/change/")
    kept = staff.post(f"/admin/chat/agent/{agent.pk}/change/", {**fields, "api_key": ""})
    agent.refresh_from_db()
    key_after_blank = agent.api_key
    staff.post(f"/admin/chat/agent/{agent.pk}/change/", {**fields, "clear_api_key": "on"})
    agent.refresh_from_db()

    assert b"sk-provider-secret" not in page.content
    assert kept.status_code == 302
    assert key_after_blank == "sk-provider-secret"
    assert agent.api_key == ""


def test_messages_cannot_be_added_or_edited_in_the_admin(staff):
    message = MessageFactory()

    assert staff.get("/admin/chat/message/add/").status_code == 403
    assert staff.post(f"/admin/chat/message/{message.pk}/change/", {"text": "edited"}).status_code == 403
    message.refresh_from_db()
    assert message.text != "edited"


def test_the_agent_form_takes_a_greeting_and_one_suggested_prompt_a_line(staff):
    agent = AgentFactory(suggested_prompts=["Old prompt"])
    fields = {
        "team": agent.team.pk,
        "handle": agent.handle,
        "name": agent.name,
        "provider": "openai",
        "model": agent.model,
        "temperature": 0,
        "max_steps": 8,
        "tools": "[]",
        "greeting": "Welcome!",
    }

    page = staff.get(f"/admin/chat/agent/{agent.pk}/change/")
    saved = staff.post(
        f"/admin/chat/agent/{agent.pk}/change/", {**fields, "suggested_prompts": "Track an order\n\n Return an item \n"}
    )
    agent.refresh_from_db()
    kept = (agent.greeting, agent.suggested_prompts)
    refused = staff.post(
        f"/admin/chat/agent/{agent.pk}/change/", {**fields, "suggested_prompts": "\n".join(f"p{n}" for n in range(7))}
    )
    agent.refresh_from_db()

    assert b"Old prompt</textarea>" in page.content
    assert saved.status_code == 302
    assert kept == ("Welcome!", ["Track an order", "Return an item"])
    assert refused.status_code == 200  # the form again, with the error
    assert b"at most 6 prompts" in refused.content
    assert agent.suggested_prompts == ["Track an order", "Return an item"]
