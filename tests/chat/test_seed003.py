"""Seed 003 under ``/api/v1/chat/``, in-process: its stream format, the message handed to
the relay with both contexts stored and given to the model, compaction and context usage
with the canonical bodies, UI commands answered, errors in the document's voice, and one
session seen alike through the canonical API and both adapters."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from chat.models import Message
from runs import compaction, loop
from runs.events import StreamEvent
from runs.formats import Seed003Format
from runs.handoff import HANDOFF_HEADER
from runs.models import Run, ToolCall
from tests.conftest import bearer_client
from tests.factories import MessageFactory, SessionFactory
from tests.runs.conftest import ScriptedProvider, relayed, text, tool_call

pytestmark = pytest.mark.django_db

RUN = "5e55105e-0000-4000-8000-0000000000aa"


def event(seq: int, type_: str, **data) -> StreamEvent:
    return StreamEvent(seq, RUN, type_, json.dumps({"type": type_, **data}))


def frames(wire: Seed003Format, *events: StreamEvent) -> list[dict]:
    lines = [wire.frame(e) for e in events]
    assert all(line == "" or (line.startswith("data: ") and line.endswith("\n\n")) for line in lines)
    return [json.loads(line[len("data: ") :]) for line in lines if line]


def test_the_stream_is_tokens_then_done_with_the_whole_message():
    wire = Seed003Format()

    seen = frames(
        wire,
        event(1, "start", messageId="m-1"),
        event(2, "start-step"),
        event(3, "text-start", id="t"),
        event(4, "text-delta", id="t", delta="Hello, "),
        event(5, "text-delta", id="t", delta="world."),
        event(6, "text-end", id="t"),
        event(7, "finish-step"),
        event(8, "finish", messageMetadata={"usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    )

    assert seen == [
        {"type": "token", "content": "Hello, "},
        {"type": "token", "content": "world."},
        {
            "type": "done",
            "message": {"id": "m-1", "role": "assistant", "content": "Hello, world."},
            "metadata": {
                "run_id": RUN,
                "status": "complete",
                "commands": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            },
        },
    ]
    assert "event:" not in wire.frame(event(9, "text-delta", id="t", delta="x"))
    assert wire.epilogue(complete=True) == b""


def test_a_ui_command_and_a_failure_in_the_stream():
    wire = Seed003Format()
    call = {"call_id": "c-1", "tool_name": "navigate", "input": {"to": "/pricing"}, "result_url": "http://x"}

    seen = frames(
        wire,
        event(1, "start", messageId="m-1"),
        event(2, "data-client-tool-call", data=call),
        event(3, "error", errorText="The model failed."),
        event(4, "finish"),
    )

    assert seen == [
        {"type": "command", "call_id": "c-1", "name": "navigate", "input": {"to": "/pricing"}},
        {"type": "error", "code": "generation_failed", "message": "The model failed."},
        {
            "type": "done",
            "message": {"id": "m-1", "role": "assistant", "content": ""},
            "metadata": {
                "run_id": RUN,
                "status": "failed",
                "commands": [{"call_id": "c-1", "name": "navigate", "input": {"to": "/pricing"}}],
            },
        },
    ]
    cut = json.loads(wire.epilogue(complete=False).decode()[len("data: ") :])
    assert (cut["type"], cut["code"]) == ("error", "stream_interrupted")


def test_a_reply_cut_by_the_token_cap_is_done_incomplete():
    wire = Seed003Format()

    seen = frames(wire, event(1, "start", messageId="m-1"), event(2, "finish", finishReason="length"))

    assert seen[-1]["metadata"]["status"] == "incomplete"


APPROVAL = {
    "call_id": "c-1",
    "tool_name": "refund",
    "input": {"order": 7},
    "approval_url": "http://x/approval",
    "expires_at": "2026-12-08T10:00:00Z",
}


def test_an_approval_ends_the_stream_with_done_naming_what_waits_and_where():
    wire = Seed003Format()
    ends_step = event(7, "finish-step")

    seen = frames(
        wire,
        event(1, "start", messageId="m-1"),
        event(2, "start-step"),
        event(3, "text-delta", id="t", delta="Refunding."),
        event(4, "tool-input-available", toolCallId="c-1", toolName="refund", input={"order": 7}),
        event(5, "tool-approval-request", approvalId="c-1", toolCallId="c-1"),
        event(6, "data-approval-required", data=APPROVAL),
        ends_step,
    )

    assert seen == [
        {"type": "token", "content": "Refunding."},
        {
            "type": "done",
            "message": {"id": "m-1", "role": "assistant", "content": "Refunding."},
            "metadata": {
                "run_id": RUN,
                "status": "action_required",
                "commands": [],
                "pending_actions": [
                    {
                        "type": "approval",
                        "call_id": "c-1",
                        "tool_name": "refund",
                        "input": {"order": 7},
                        "url": "http://x/approval",
                        "expires_at": "2026-12-08T10:00:00Z",
                    }
                ],
            },
        },
    ]
    assert "error" not in [f["type"] for f in seen]
    assert wire.ends_after(ends_step)


def test_a_sign_in_asked_between_steps_ends_the_stream_at_once():
    wire = Seed003Format()
    link = {"url": "https://auth.example/authorize", "expires_at": "2026-12-07T15:00:00Z"}
    auth = {"attempt_id": "a-1", "provider": "crm", "call_id": "c-2", "auth_link": link, "link_url": "http://x/link"}
    asked = event(4, "data-connection-auth-required", data=auth)

    seen = frames(
        wire,
        event(1, "start", messageId="m-1"),
        event(2, "tool-input-available", toolCallId="c-2", toolName="crm_lookup", input={"q": "acme"}),
        event(3, "data-client-tool-call", data={"call_id": "c-3", "tool_name": "navigate", "input": {}}),
        asked,
    )

    assert seen[-1]["type"] == "done"
    assert seen[-1]["metadata"]["status"] == "action_required"
    assert seen[-1]["metadata"]["commands"] == [{"call_id": "c-3", "name": "navigate", "input": {}}]
    assert seen[-1]["metadata"]["pending_actions"] == [
        {
            "type": "connection",
            "call_id": "c-2",
            "tool_name": "crm_lookup",
            "input": {"q": "acme"},
            "url": "http://x/link",
            "expires_at": "2026-12-07T15:00:00Z",
        }
    ]
    assert wire.ends_after(asked)


def test_a_compaction_is_tokens_then_done_with_its_numbers():
    wire = Seed003Format()
    numbers = {"before_tokens": 900, "after_tokens": 200, "messages_compacted": 4}

    seen = frames(
        wire,
        event(1, "start"),  # a compaction run's: no message id
        event(2, "text-start", id="c"),
        event(3, "text-delta", id="c", delta="Summary."),
        event(4, "text-end", id="c"),
        event(5, "data-compaction", data=numbers),
        event(6, "finish"),
    )

    assert seen == [
        {"type": "token", "content": "Summary."},
        {
            "type": "done",
            "message": {"id": "", "role": "assistant", "content": "Summary."},
            "metadata": {"status": "complete", "commands": [], "compaction": numbers},
        },
    ]


@pytest.fixture
def session(member, agent):
    return SessionFactory(agent=agent, owner=member.user)


@pytest.fixture
def model():
    provider = ScriptedProvider([])
    with mock.patch.object(loop, "get_provider", return_value=provider):
        yield provider


def test_a_message_is_handed_to_the_relay_and_the_model_gets_both_contexts(api, session, model):
    model.scripts.append(text("Team plan."))
    body = {
        "content": "Which plan?",
        "uiContext": {"currentPage": "/pricing", "selectedElements": ["plan-team"]},
        "scanContext": {"tabTitle": "Pricing", "pageUrl": "https://example.com/pricing"},
    }

    response = api.post(f"/api/v1/chat/sessions/{session.uuid}/messages", body, format="json")
    run = Run.objects.get(uuid=response["Genie-Run-Uuid"])
    loop.execute_run(run.pk)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response[HANDOFF_HEADER.decode()]  # relayed by the ASGI edge (the live tests read it)
    assert response["Genie-Session-Uuid"] == str(session.uuid)
    user_message = run.user_message
    assert (user_message.text, user_message.ui_context, user_message.scan_context) == (
        "Which plan?",
        body["uiContext"],
        body["scanContext"],
    )
    system = " ".join(m["content"] for m in model.requests[0].messages if m["role"] == "system")
    assert "/pricing" in system
    assert "plan-team" in system
    assert '"tabTitle": "Pricing"' in system


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "content"),
        ({"content": "  "}, "content"),
        ({"content": "Hi", "uiContext": "x"}, "uiContext"),
        ({"content": "Hi", "text": "x"}, "text"),
    ],
)
def test_a_bad_message_is_400_in_the_documents_voice_and_stores_nothing(api, session, body, field):
    response = api.post(f"/api/v1/chat/sessions/{session.uuid}/messages", body, format="json")

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["details"]
    assert not session.messages.exists()


def test_unknown_sessions_and_wrong_keys_in_the_documents_voice(api, db):
    unknown = api.post("/api/v1/chat/sessions/not-a-session/messages", {"content": "Hi"}, format="json")
    usage = api.get("/api/v1/chat/sessions/5e55105e-0000-4000-8000-00000000dead/context-usage")
    wrong_key = bearer_client("sk_live_not-a-key").post("/api/v1/chat/command", {}, format="json")

    assert unknown.status_code == usage.status_code == 404
    assert unknown.json() == {"type": "error", "code": "not_found", "message": "No such session.", "details": None}
    assert wrong_key.status_code == 401
    assert wrong_key.json()["type"] == "error"


def test_compact_and_context_usage_answer_the_canonical_bodies(api, session):
    for n in range(3):
        MessageFactory(session=session, text=f"question {n} " + "words " * 20)
        MessageFactory(session=session, sender_role=Message.SenderRole.AGENT, text=f"answer {n}")
    canonical_usage = api.get(f"/api/v1/sessions/{session.uuid}/context-usage").json()
    summariser = ScriptedProvider([text("The user asked ", "three questions.")])

    usage = api.get(f"/api/v1/chat/sessions/{session.uuid}/context-usage")
    with mock.patch.object(compaction, "get_provider", return_value=summariser):
        compacted = api.post(f"/api/v1/chat/sessions/{session.uuid}/compact", {"keep_last": 2}, format="json")
        loop.execute_run(Run.objects.get(uuid=compacted["Genie-Run-Uuid"]).pk)  # the worker's part
        chunks = relayed(compacted).chunks
    after = api.get(f"/api/v1/chat/sessions/{session.uuid}/context-usage").json()

    assert usage.status_code == 200
    assert usage.json() == canonical_usage
    assert compacted.status_code == 200
    assert compacted["Content-Type"] == "text/event-stream"
    assert [c["type"] for c in chunks] == ["token", "token", "done"]
    assert "".join(c["content"] for c in chunks[:2]) == "The user asked three questions."
    assert chunks[-1]["message"]["content"] == "The user asked three questions."
    assert chunks[-1]["metadata"]["compaction"] == {
        "before_tokens": chunks[-1]["metadata"]["compaction"]["before_tokens"],
        "after_tokens": after["used_tokens"],
        "messages_compacted": 4,
    }
    assert after["last_compacted_at"] is not None
    assert after["messages_in_context"] == 2


def test_a_ui_command_is_answered_and_the_reply_goes_on(api, session, agent, model):
    agent.tools = [{"name": "navigate", "kind": "client"}]
    agent.save()
    model.scripts += [tool_call("navigate", '{"to": "/pricing"}'), text("You are on pricing.")]
    response = api.post(f"/api/v1/chat/sessions/{session.uuid}/messages", {"content": "Show prices"}, format="json")
    run = Run.objects.get(uuid=response["Genie-Run-Uuid"])
    loop.execute_run(run.pk)
    call = ToolCall.objects.get(run=run)
    body = {"session_id": str(session.uuid), "call_id": call.call_id, "output": {"navigated": True}}

    answered = api.post("/api/v1/chat/command", body, format="json")
    again = api.post("/api/v1/chat/command", body, format="json")
    unknown = api.post("/api/v1/chat/command", {**body, "call_id": "nope"}, format="json")
    missing = api.post("/api/v1/chat/command", {"session_id": str(session.uuid), "call_id": "x"}, format="json")
    loop.execute_run(run.pk)  # the continuation enqueued on commit

    assert answered.status_code == 200
    assert answered.json() == {"session_id": str(session.uuid), "call_id": call.call_id, "status": "succeeded"}
    assert again.status_code == 409
    assert again.json()["type"] == "error"
    assert unknown.status_code == 404
    assert missing.status_code == 400
    assert "non_field_errors" in missing.json()["details"]
    call.refresh_from_db()
    assert call.output == {"navigated": True}
    run.refresh_from_db()
    assert run.agent_message.text == "You are on pricing."


def test_one_session_is_the_same_through_the_canonical_api_and_both_adapters(api, agent, model):
    model.scripts.append(text("Hi there."))
    chat_id = api.post("/chat", {"agentId": agent.handle}, format="json").json()["id"]
    response = api.post(f"/api/v1/chat/sessions/{chat_id}/messages", {"content": "Hello"}, format="json")
    loop.execute_run(Run.objects.get(uuid=response["Genie-Run-Uuid"]).pk)

    canonical = api.get(f"/api/v1/sessions/{chat_id}?include=messages").json()
    seed002 = api.get(f"/chat/{chat_id}").json()
    seed003 = api.get(f"/api/v1/chat/sessions/{chat_id}/context-usage").json()

    assert canonical["uuid"] == seed002["id"] == chat_id
    assert canonical["agent"] == seed002["agentId"] == agent.handle
    assert [(m["uuid"], m["text"]) for m in canonical["messages"]] == [
        (m["id"], m["content"]) for m in seed002["messages"]
    ]
    assert [m["content"] for m in seed002["messages"]] == ["Hello", "Hi there."]
    assert seed003 == api.get(f"/api/v1/sessions/{chat_id}/context-usage").json()
    assert seed003["messages_total"] == 2
