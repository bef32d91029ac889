from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Message
from runs.models import Run, ToolCall
from tests.factories import (
    AgentFactory,
    FeedbackFactory,
    MemberFactory,
    MessageFactory,
    RunFactory,
    SessionFactory,
    UserFactory,
)

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
    demo = MemberFactory(user__username="demo")
    call = ToolCall.objects.create(run=run, call_id="call_x", tool_name="refund", input={"order": 7})
    call.mark_approved(decided_by=f"user:{demo.uuid}", reason="ok")
    call.mark_succeeded({"refunded": True})
    at = f"{timezone.localtime(call.decided_at):%Y-%m-%d %H:%M:%S}"

    change_page = staff.get(f"/admin/chat/session/{run.session.pk}/change/").content.decode()
    conversation = staff.get(f"/admin/chat/session/{run.session.pk}/conversation/").content.decode()
    calls = staff.get("/admin/runs/toolcall/").content.decode()

    assert "refunded" in change_page
    for html in (change_page, conversation, calls):
        assert f"Approved by demo at {at}" in html
        assert f"user:{demo.uuid}" not in html


def test_a_denial_by_a_key_names_the_key_by_its_prefix(staff):
    call = ToolCall.objects.create(run=RunFactory(), call_id="call_y", tool_name="refund", input={})
    call.mark_denied(decided_by="secret_key:sk_live_AbCdEfGh", reason="not today")

    html = staff.get("/admin/runs/toolcall/").content.decode()

    assert "Denied by secret key sk_live_AbCdEfGh… at" in html
    assert ": not today" in html


def test_the_runs_list_shows_each_runs_duration(staff):
    run = RunFactory()
    started = timezone.now()
    Run.objects.filter(pk=run.pk).update(started_at=started, finished_at=started + timedelta(seconds=2.75))
    RunFactory()  # still queued

    html = staff.get("/admin/runs/run/?o=9").content.decode()  # sorted by duration

    assert re.findall(r"<td class=\"field-duration\">(.*?)</td>", html) == ["2.75 s", "—"]


@pytest.mark.parametrize(
    "model", ["feedback/feedback", "runs/run", "runs/toolcall", "runs/runevent", "runs/connectionattempt"]
)
def test_records_only_the_system_writes_cannot_be_added_by_hand(staff, model):
    listing = staff.get(f"/admin/{model}/").content.decode()

    assert staff.get(f"/admin/{model}/add/").status_code == 403
    assert f'href="/admin/{model}/add/"' not in listing


def test_staff_may_still_correct_a_ratings_comment(staff):
    feedback = FeedbackFactory(rating="negative", body="rude words")

    page = staff.get(f"/admin/feedback/feedback/{feedback.pk}/change/")

    assert page.status_code == 200
    assert b'name="body"' in page.content


def test_the_conversation_marks_agent_text_for_safe_markdown_and_shows_a_replys_error(staff):
    run = RunFactory(user_message__text="**not markdown**", agent_message__text="**Miso** <img src=x onerror=alert(1)>")
    Message.objects.filter(pk=run.agent_message_id).update(
        status=Message.Status.FAILED, error={"code": "provider_error", "message": "The model is unreachable."}
    )

    html = staff.get(f"/admin/chat/session/{run.session.pk}/conversation/").content.decode()

    # Agent text goes out escaped, marked for the page's Markdown renderer (marked + DOMPurify).
    assert '<div class="bubble-text" data-markdown>**Miso** &lt;img src=x onerror=alert(1)&gt;</div>' in html
    assert '<div class="bubble-text">**not markdown**</div>' in html
    assert "chat/vendor/purify.min.js" in html
    assert "chat/admin-conversation.js" in html
    assert "provider_error" in html
    assert "The model is unreachable." in html


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


def test_the_conversation_marks_what_an_edit_replaced_and_links_to_what_replaced_it(staff):
    session = SessionFactory(title="Cats")
    edited = MessageFactory(session=session, text="Name a cat")
    old_reply = MessageFactory(session=session, sender_role="agent", text="Miso")
    new = MessageFactory(session=session, text="Name a dog")
    MessageFactory(session=session, sender_role="agent", text="Rex")
    Message.objects.filter(pk__in=[edited.pk, old_reply.pk]).update(replaced_by=new)

    html = staff.get(f"/admin/chat/session/{session.pk}/conversation/").content.decode()

    assert html.count(f'href="#message-{new.uuid}" title="An edit or a regeneration replaced it') == 2
    assert html.count(">Replaced</a>") == 2
