"""Edit a sent message and regenerate the last reply (``POST …/messages/{m}/edit`` and
``…/regenerate``): a new turn from that point, with the replaced messages kept in the
transcript and left out of later prompts."""

from __future__ import annotations

import pytest

from chat.models import Compaction, Message, Upload
from runs.context import prompt_parts
from runs.models import Run
from tests.factories import FeedbackFactory, RunFactory, SessionFactory

pytestmark = pytest.mark.django_db


def turn(session, question: str, answer: str) -> Run:
    """A finished turn: the user's question and the agent's complete answer."""
    run = RunFactory(session=session, user_message__text=question, status=Run.Status.SUCCEEDED)
    Message.objects.filter(pk=run.agent_message_id).update(text=answer, status=Message.Status.COMPLETE)
    return run


@pytest.fixture
def chat(member, agent):
    """Two finished turns of the member's."""
    session = SessionFactory(agent=agent, owner=member.user, title="Cats")
    return session, turn(session, "Name a cat", "Miso"), turn(session, "And a dog?", "Rex")


def messages_of(api, session) -> list[dict]:
    return api.get(f"/api/v1/sessions/{session.uuid}/messages").json()["results"]


def test_edit_starts_a_new_turn_and_keeps_what_it_replaced(api, chat, django_capture_on_commit_callbacks):
    session, first, _ = chat
    url = f"/api/v1/sessions/{session.uuid}/messages/{first.user_message.uuid}/edit"

    with django_capture_on_commit_callbacks() as queued:
        response = api.post(url, {"text": "Name a kitten"}, format="json")

    assert response.status_code == 201
    body = response.json()
    run = Run.objects.get(uuid=body["run_uuid"])
    assert str(run.agent_message.uuid) == body["uuid"]
    assert str(run.user_message.uuid) == body["user_message_uuid"]
    assert len(queued) == 1
    transcript = messages_of(api, session)
    assert [(m["text"], m["replaced_by"]) for m in transcript] == [
        ("Name a cat", body["user_message_uuid"]),
        ("Miso", body["user_message_uuid"]),
        ("And a dog?", body["user_message_uuid"]),
        ("Rex", body["user_message_uuid"]),
        ("Name a kitten", None),
        ("", None),
    ]
    prompt = prompt_parts(session=session, user_message=run.user_message)
    assert [m.text for m in prompt.history] == ["Name a kitten"]  # the pending reply has no text yet
    assert api.get("/api/v1/sessions").json()["results"][0]["preview"] == "Name a kitten"


def test_edit_keeps_the_attachments_and_refuses_what_cannot_be_edited(api, chat, member, agent):
    session, first, second = chat
    notes = Upload.objects.create(
        session=session, file="uploads/notes", filename="notes.txt", content_type="text/plain", size=3, sha256="0" * 64
    )
    second.user_message.attachments.set([notes])
    base = f"/api/v1/sessions/{session.uuid}/messages"

    agent_message = api.post(f"{base}/{first.agent_message.uuid}/edit", {"text": "x"}, format="json")
    blank = api.post(f"{base}/{second.user_message.uuid}/edit", {"text": "  "}, format="json")
    edited = api.post(f"{base}/{second.user_message.uuid}/edit", {"text": "And a puppy?"}, format="json")
    busy = api.post(f"{base}/{first.user_message.uuid}/edit", {"text": "y"}, format="json")
    Run.objects.filter(uuid=edited.json()["run_uuid"]).update(status=Run.Status.SUCCEEDED)
    replaced = api.post(f"{base}/{second.user_message.uuid}/edit", {"text": "z"}, format="json")
    other = SessionFactory(agent=agent)  # a teammate's
    elsewhere = api.post(
        f"/api/v1/sessions/{other.uuid}/messages/{second.user_message.uuid}/edit", {"text": "z"}, format="json"
    )

    assert (agent_message.status_code, agent_message.json()["error"]["code"]) == (400, "not_a_user_message")
    assert blank.status_code == 400
    assert edited.status_code == 201
    new_message = Message.objects.get(uuid=edited.json()["user_message_uuid"])
    assert (new_message.text, list(new_message.attachments.all())) == ("And a puppy?", [notes])
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "run_active")
    assert (replaced.status_code, replaced.json()["error"]["code"]) == (409, "message_replaced")
    assert replaced.json()["error"]["details"]["replaced_by"] == edited.json()["user_message_uuid"]
    assert elsewhere.status_code == 404
    assert session.messages.count() == 6  # only the one edit wrote anything
    assert Message.objects.get(replaced_by__isnull=True, text="Miso")  # before the edit point: kept in play


def test_a_compacted_message_cannot_be_edited(api, chat):
    session, first, second = chat
    Compaction.objects.create(
        session=session,
        upto_message=first.agent_message,
        summary="A cat was named.",
        messages_compacted=2,
        before_tokens=10,
        after_tokens=5,
    )
    base = f"/api/v1/sessions/{session.uuid}/messages"

    refused = api.post(f"{base}/{first.user_message.uuid}/edit", {"text": "Name a kitten"}, format="json")
    allowed = api.post(f"{base}/{second.user_message.uuid}/edit", {"text": "And a puppy?"}, format="json")

    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "message_compacted")
    assert allowed.status_code == 201


def test_regenerate_replaces_only_the_last_reply_and_keeps_its_rating(api, chat):
    session, first, second = chat
    FeedbackFactory(message=second.agent_message, rating="negative")
    base = f"/api/v1/sessions/{session.uuid}/messages"

    earlier = api.post(f"{base}/{first.agent_message.uuid}/regenerate")
    of_a_user_message = api.post(f"{base}/{second.user_message.uuid}/regenerate")
    response = api.post(f"{base}/{second.agent_message.uuid}/regenerate")
    busy = api.post(f"{base}/{response.json()['uuid']}/regenerate")

    assert (earlier.status_code, earlier.json()["error"]["code"]) == (409, "not_the_last_reply")
    assert (of_a_user_message.status_code, of_a_user_message.json()["error"]["code"]) == (400, "not_a_reply")
    assert response.status_code == 201
    body = response.json()
    assert body["user_message_uuid"] == str(second.user_message.uuid)
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "run_active")
    transcript = messages_of(api, session)
    assert [(m["text"], m["replaced_by"]) for m in transcript] == [
        ("Name a cat", None),
        ("Miso", None),
        ("And a dog?", None),
        ("Rex", body["uuid"]),
        ("", None),
    ]
    assert transcript[3]["feedback"]["rating"] == "negative"


def test_an_empty_session_takes_uploads_before_its_first_message(api, agent, member):
    created = api.post("/api/v1/sessions", {"empty": True, "title": "Notes"}, format="json")
    with_text = api.post("/api/v1/sessions", {"empty": True, "text": "hi"}, format="json")
    without_either = api.post("/api/v1/sessions", {}, format="json")

    assert created.status_code == 201
    body = created.json()
    assert "run_uuid" not in body
    session = member.user.chat_sessions.get(uuid=body["uuid"])
    assert (session.title, session.messages.count(), session.runs.count()) == ("Notes", 0, 0)
    assert (with_text.status_code, without_either.status_code) == (400, 400)
    assert without_either.json()["error"]["details"] == {"text": ["This field is required."]}
    assert member.user.chat_sessions.count() == 1
