"""``/api/chat`` in-process: bad AI SDK bodies are clear errors in the SDK's error shape and
store nothing; the chat's history as ``UIMessage[]``; the format's pause and metadata."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from chat.models import Message, Session
from genie.models import AccessToken
from genie.services import create_access_token
from protocols.aisdk.views import chat_stream_app
from runs.events import StreamEvent
from runs.formats import AISDKChatFormat
from runs.models import Run, ToolCall
from runs.sse import StreamRefusal
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
        (
            [
                user("Hi", "u0"),
                {"id": "a0", "role": "assistant", "parts": [{"type": "tool-t", "toolCallId": 7, "state": "x"}]},
                user("Again"),
            ],
            400,
            "validation_error",
        ),
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


def test_a_new_chat_has_no_messages_and_nothing_to_resume(api, personal_key):
    """``useChat({id, resume: true})`` on a chat id not used yet: 204, as when idle."""
    response = api.get("/api/chat/nope/messages")
    scope = {
        "headers": [(b"authorization", f"Bearer {personal_key}".encode())],
        "url_route": {"kwargs": {"chat_id": "nope"}},
        "client": ("127.0.0.1", 5000),
    }

    assert response.status_code == 200
    assert response.json() == []
    assert chat_stream_app.prepare(scope)[0] == StreamRefusal(204)
    bad = {**scope, "headers": [(b"authorization", b"Bearer sk_wrong")]}
    assert chat_stream_app.prepare(bad)[0].status == 401


def test_another_callers_chat_id_is_not_found(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        post_chat(api, id="chat-5", messages=[user("Hello")])
    _, secret = create_access_token(team=Session.objects.get().team, kind=AccessToken.Kind.SECRET)

    assert api.get("/api/chat/chat-5/messages").status_code == 200
    # A secret key reaches the team's sessions, but chat ids are each caller's own.
    assert bearer_client(secret).get("/api/chat/chat-5/messages").json() == []
    assert_sdk_error(bearer_client(secret).post("/api/chat/chat-5/stop"), 404, "not_found")


def paused_chat(api, chat_id: str, capture) -> tuple[Run, ToolCall]:
    """A chat whose reply waits for an approval of ``call_1``."""
    with capture():
        post_chat(api, id=chat_id, messages=[user("Delete order 7")])
    run = Run.objects.get(session__chat_id=chat_id)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.REQUIRES_ACTION)
    call = ToolCall.objects.create(
        run=run, call_id="call_1", tool_name="delete_order", input={}, status=ToolCall.Status.PENDING_APPROVAL
    )
    run.refresh_from_db()
    return run, call


def reply_with(run: Run, part: dict) -> dict:
    return {"id": str(run.agent_message.uuid), "role": "assistant", "parts": [{"type": "step-start"}, part]}


def test_a_tool_part_that_is_not_the_sdks_shape_is_refused(api, django_capture_on_commit_callbacks):
    run, call = paused_chat(api, "chat-6", django_capture_on_commit_callbacks)
    part = {"type": "tool-delete_order", "toolCallId": "call_1", "state": "approval-responded", "input": {}}

    for approval in ["yes", None, {"id": "call_1"}, {"id": "call_1", "approved": "yes"}]:
        sent = {**part, "approval": approval} if approval is not None else part
        response = post_chat(api, id="chat-6", messages=[user("Delete order 7"), reply_with(run, sent)])

        assert_sdk_error(response, 400, "validation_error")
    call.refresh_from_db()
    assert call.status == ToolCall.Status.PENDING_APPROVAL
    assert not call.decided_by


def test_a_finished_reply_sent_again_ends_at_once(api, django_capture_on_commit_callbacks):
    """Its parts name only a server tool the run ran: nothing to apply or relay."""
    run, call = paused_chat(api, "chat-7", django_capture_on_commit_callbacks)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
    ToolCall.objects.filter(pk=call.pk).update(status=ToolCall.Status.SUCCEEDED, kind="server", output=1)
    part = {"type": "tool-delete_order", "toolCallId": "call_1", "state": "output-available", "input": {}, "output": 1}

    response = post_chat(api, id="chat-7", messages=[user("Delete order 7"), reply_with(run, part)])

    assert response.status_code == 200
    assert "Genie-Relay-Handoff" not in response
    frames = [json.loads(line[6:]) for line in response.content.decode().splitlines() if line.startswith("data: {")]
    assert frames == [
        {"type": "start", "messageId": str(run.agent_message.uuid), "messageMetadata": {"run_uuid": str(run.uuid)}},
        {"type": "finish", "finishReason": "stop", "messageMetadata": {"run_uuid": str(run.uuid)}},
    ]
    assert response.content.endswith(b"data: [DONE]\n\n")


def cookie_client(member, **headers: str) -> APIClient:
    client = APIClient(enforce_csrf_checks=True, **headers)
    client.force_login(member.user)
    return client


def test_a_page_of_the_site_posts_with_its_cookie_and_no_csrf_token(member, agent, django_capture_on_commit_callbacks):
    """``useChat()`` on a page Genie serves: the browser's ``Origin`` stands in for the token."""
    with django_capture_on_commit_callbacks():
        same = post_chat(cookie_client(member, HTTP_ORIGIN="http://testserver"), id="c8", messages=[user("Hi")])
    foreign = post_chat(cookie_client(member, HTTP_ORIGIN="https://evil.example"), id="c9", messages=[user("Hi")])
    no_origin = post_chat(cookie_client(member), id="c9", messages=[user("Hi")])

    assert same.status_code == 200, same.content
    assert "Genie-Relay-Handoff" in same
    assert_sdk_error(foreign, 403, "permission_denied")
    assert_sdk_error(no_origin, 403, "permission_denied")
    assert list(Session.objects.values_list("chat_id", flat=True)) == ["c8"]


def test_a_trusted_origin_posts_with_its_cookie_too(member, agent, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example"]

    response = cookie_client(member, HTTP_ORIGIN="https://app.example").get("/api/chat/c10/messages")
    stopped = cookie_client(member, HTTP_ORIGIN="https://app.example").post("/api/chat/c10/stop")

    assert response.json() == []
    assert_sdk_error(stopped, 404, "not_found")  # past the CSRF check: the chat is unknown


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
    assert [f["type"] for f in frames][-3:] == ["finish-step", "tool-output-available", "finish"]
    assert frames[-1]["finishReason"] == "stop"
    assert frames[-1]["messageMetadata"] == {"run_uuid": "r1", "usage": {"prompt_tokens": 3}}


def test_the_decision_chunk_that_ai_6_refuses_is_left_out():
    frames, _ = chunks(AISDKChatFormat(answered=["c1"]), APPROVAL_STEP)

    # ai 6 fails the whole stream on a chunk type it does not know; ai 7 has the decision already.
    assert "tool-approval-response" not in [f["type"] for f in frames]


@pytest.mark.parametrize("reason", ["length", "content-filter", "stop"])
def test_finish_keeps_the_reason_the_run_stored(reason):
    frames, _ = chunks(AISDKChatFormat(), [("start", {}), ("finish", {"finishReason": reason})])

    assert frames[-1]["finishReason"] == reason


def test_finish_says_error_after_an_error_and_stop_when_none_was_stored():
    errored, _ = chunks(AISDKChatFormat(), [("start", {}), ("error", {"errorText": "x"}), ("finish", {})])
    plain, _ = chunks(AISDKChatFormat(), [("start", {}), ("finish", {})])

    assert errored[-1]["finishReason"] == "error"
    assert plain[-1]["finishReason"] == "stop"


def test_a_continuation_opens_with_the_same_message():
    wire = AISDKChatFormat(continues=("m1", "r1"))

    opening = wire.preamble().decode()

    assert 'data: {"type":"start","messageId":"m1","messageMetadata":{"run_uuid":"r1"}}' in opening
    assert wire.epilogue(complete=True) == b"data: [DONE]\n\n"
