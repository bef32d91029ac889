"""``/api/chat`` in-process: bad AI SDK bodies are clear errors in the SDK's error shape and
store nothing; the chat's history as ``UIMessage[]``; the format's pause and metadata."""

from __future__ import annotations

import json

import pytest

from chat.models import Message, Session
from genie.models import AccessToken
from genie.services import create_access_token
from runs.events import StreamEvent
from runs.formats import AISDKChatFormat
from runs.models import Run
from tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


def user(text: str, id_: str = "u1") -> dict:
    return {"id": id_, "role": "user", "parts": [{"type": "text", "text": text}]}


def post_chat(api, **body) -> object:
    return api.post("/api/chat", {"trigger": "submit-message", **body}, format="json")


def assert_sdk_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["code"] == code
    assert body["errorText"] == body["error"]["message"]


def test_a_first_message_creates_the_chats_session_and_hands_its_stream_off(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        response = post_chat(api, id="chat-1", messages=[user("Hello")])

    session = Session.objects.get(chat_id="chat-1")
    assert response.status_code == 200
    assert "Genie-Relay-Handoff" in response
    assert response["Genie-Session-Uuid"] == str(session.uuid)
    assert [m.text for m in session.messages.filter(sender_role="user")] == ["Hello"]


@pytest.mark.parametrize(
    ("messages", "status", "code"),
    [
        ([{"id": "a1", "role": "system", "parts": [{"type": "text", "text": "Be brief"}]}], 400, "no_user_message"),
        ([user("   ")], 400, "validation_error"),
        ([user("Hi", "u0"), {"id": "a0", "role": "assistant", "parts": []}, user("Again")], 409, "history_mismatch"),
        ([{"id": "a0", "role": "assistant", "parts": []}], 409, "history_mismatch"),
        ([{"role": "user", "parts": "Hi"}], 400, "validation_error"),
    ],
)
def test_bad_bodies_are_sdk_errors_and_store_nothing(api, messages, status, code):
    response = post_chat(api, id="chat-2", messages=messages)

    assert_sdk_error(response, status, code)
    assert not Session.objects.filter(chat_id="chat-2").exists()


def test_unknown_fields_and_triggers_are_refused(api):
    assert_sdk_error(post_chat(api, id="c", messages=[user("Hi")], extra=1), 400, "validation_error")
    assert_sdk_error(post_chat(api, id="c", messages=[user("Hi")], trigger="resume-stream"), 400, "validation_error")
    assert not Session.objects.exists()


def test_messages_that_skip_the_stored_reply_are_a_mismatch(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        post_chat(api, id="chat-3", messages=[user("Hello")])
    session = Session.objects.get(chat_id="chat-3")
    Run.objects.filter(session=session).update(status=Run.Status.SUCCEEDED)
    before = Message.objects.count()

    response = post_chat(api, id="chat-3", messages=[user("Hello"), user("Again", "u2")])

    assert_sdk_error(response, 409, "history_mismatch")
    assert Message.objects.count() == before


def test_the_history_is_ui_messages(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        post_chat(api, id="chat-4", messages=[user("Hello")])
    reply = Message.objects.get(session__chat_id="chat-4", sender_role="agent")
    Message.objects.filter(pk=reply.pk).update(text="Hi there.")

    body = api.get("/api/chat/chat-4/messages").json()

    assert [m["role"] for m in body] == ["user", "assistant"]
    assert body[0]["parts"] == [{"type": "text", "text": "Hello"}]
    assert body[1]["id"] == str(reply.uuid)
    assert body[1]["parts"][-1] == {"type": "text", "text": "Hi there.", "state": "done"}
    assert body[1]["metadata"]["run_uuid"] == str(reply.run.uuid)
    assert api.get("/api/chat/nope/messages").status_code == 404


def test_another_callers_chat_id_is_not_found(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        post_chat(api, id="chat-5", messages=[user("Hello")])
    _, secret = create_access_token(team=Session.objects.get().team, kind=AccessToken.Kind.SECRET)

    assert api.get("/api/chat/chat-5/messages").status_code == 200
    # A secret key reaches the team's sessions, but chat ids are each caller's own.
    assert bearer_client(secret).get("/api/chat/chat-5/messages").status_code == 404


def chunks(wire: AISDKChatFormat, events: list[tuple[str, dict]]) -> tuple[list[dict], bool]:
    frames, ended = [], False
    for seq, (type_, data) in enumerate(events, start=1):
        text = wire.frame(StreamEvent(seq, "r1", type_, json.dumps({"type": type_, **data})))
        frames += [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        if wire.ends_after(StreamEvent(seq, "r1", type_, "{}")):
            ended = True
            break
    return frames, ended


APPROVAL_STEP = [
    ("start", {"messageId": "m1"}),
    ("start-step", {}),
    ("tool-input-available", {"toolCallId": "c1", "toolName": "t", "input": {}}),
    ("tool-approval-request", {"approvalId": "c1", "toolCallId": "c1"}),
    ("finish-step", {}),
    ("tool-approval-response", {"approvalId": "c1", "approved": True}),
    ("tool-output-available", {"toolCallId": "c1", "output": 1}),
    ("finish", {"messageMetadata": {"usage": {"prompt_tokens": 3}}}),
]


def test_a_pause_ends_the_response_with_tool_calls():
    frames, ended = chunks(AISDKChatFormat(), APPROVAL_STEP)

    assert ended
    assert [f["type"] for f in frames] == [
        "start",
        "start-step",
        "tool-input-available",
        "tool-approval-request",
        "finish-step",
        "finish",
    ]
    assert frames[0]["messageMetadata"] == {"run_uuid": "r1"}
    assert frames[-1] == {"type": "finish", "finishReason": "tool-calls", "messageMetadata": {"run_uuid": "r1"}}


def test_a_replay_passes_an_answered_pause_and_names_the_run_on_finish():
    frames, ended = chunks(AISDKChatFormat(answered=["c1"]), APPROVAL_STEP)

    assert ended
    assert [f["type"] for f in frames][-3:] == ["tool-approval-response", "tool-output-available", "finish"]
    assert frames[-1]["finishReason"] == "stop"
    assert frames[-1]["messageMetadata"] == {"run_uuid": "r1", "usage": {"prompt_tokens": 3}}


def test_a_continuation_opens_with_the_same_message():
    wire = AISDKChatFormat(continues=("m1", "r1"))

    opening = wire.preamble().decode()

    assert 'data: {"type":"start","messageId":"m1","messageMetadata":{"run_uuid":"r1"}}' in opening
    assert wire.epilogue(complete=True) == b"data: [DONE]\n\n"
