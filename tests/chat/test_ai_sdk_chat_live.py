"""``/api/chat`` driven by the AI SDK's own chat client (``tests/aisdk/chat.mjs``: the ``ai``
package's ``AbstractChat``, which ``useChat`` subclasses, with a ``DefaultChatTransport``):
send, stream, drop the connection and resume, approve a tool and answer a client tool,
regenerate, stop; and what Genie stored for each."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chat.models import Message, Session
from runs.models import Run, ToolCall

pytestmark = pytest.mark.live

AISDK = Path(__file__).resolve().parent.parent / "aisdk"

DELETE_ORDER = {"name": "delete_order", "kind": "client", "requires_approval": True, "description": "Delete an order."}


@dataclass(frozen=True)
class ChatClient:
    script: Path
    package: str  # "ai" (v7) or "ai6" (v6, the npm alias in tests/aisdk/package.json)


# Every flow runs with both major versions: the two send the same requests, so Genie sends
# both the chunks both accept.
@pytest.fixture(params=["ai", "ai6"])
def aisdk_chat(request, aisdk_installed) -> ChatClient:
    return ChatClient(aisdk_installed / "chat.mjs", request.param)


def use_chat(client: ChatClient, live, chat_id: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the AI SDK client saw after each step: status, error, finishReason, requests, messages."""
    done = subprocess.run(
        ["node", str(client.script), live.base_url, json.dumps(live.headers), chat_id, json.dumps(steps)],
        cwd=AISDK,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AI_PACKAGE": client.package},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["steps"]


def stored_messages(live, chat_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{live.base_url}/api/chat/{chat_id}/messages", headers=live.headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def test_use_chat_sends_two_turns_into_one_session(live, aisdk_chat):
    live.script([("text", "Miso, "), ("text", "Juniper.")], [("text", "Rex.")])
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"

    first, second = use_chat(aisdk_chat, live, chat_id, [{"send": "Two cat names"}, {"send": "A dog name"}])

    session = Session.objects.get(chat_id=chat_id)
    replies = list(session.messages.filter(sender_role=Message.SenderRole.AGENT).order_by("created_at"))
    runs = list(session.runs.order_by("created_at"))
    assert first["status"] == second["status"] == "ready"
    assert first["finishReason"] == second["finishReason"] == "stop"
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user", "assistant"]
    assert [m["id"] for m in second["messages"][1::2]] == [str(reply.uuid) for reply in replies]
    assert [text_of(m) for m in second["messages"][1::2]] == ["Miso, Juniper.", "Rex."]
    assert [reply.text for reply in replies] == ["Miso, Juniper.", "Rex."]
    assert [m["metadata"]["run_uuid"] for m in second["messages"][1::2]] == [str(run.uuid) for run in runs]
    assert "usage" in second["messages"][3]["metadata"]
    stored = stored_messages(live, chat_id)
    assert [(m["id"], m["role"]) for m in stored][1::2] == [(m["id"], "assistant") for m in second["messages"][1::2]]
    assert [text_of(m) for m in stored] == ["Two cat names", "Miso, Juniper.", "A dog name", "Rex."]


def test_a_dropped_connection_resumes_the_same_message(live, aisdk_chat):
    live.script([("text", "one "), ("delay", 0.6), ("text", "two "), ("text", "three")])
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"

    dropped, resumed = use_chat(aisdk_chat, live, chat_id, [{"send": "Count", "drop": "text-delta"}, {"resume": True}])

    reply = Message.objects.get(session__chat_id=chat_id, sender_role=Message.SenderRole.AGENT)
    assert dropped["status"] == "error"  # the connection dropped mid-reply
    assert dropped.get("finishReason") is None
    assert [r["method"] for r in resumed["requests"]] == ["GET"]
    assert resumed["requests"][0]["url"].endswith(f"/api/chat/{chat_id}/stream")
    assert resumed["status"] == "ready"
    assert [m["role"] for m in resumed["messages"]] == ["user", "assistant"]
    assert resumed["messages"][-1]["id"] == str(reply.uuid)
    assert text_of(resumed["messages"][-1]) == reply.text == "one two three"
    # Idle now: the SDK's resume gets 204 and leaves the messages alone.
    (idle,) = use_chat(aisdk_chat, live, chat_id, [{"resume": True}])
    assert idle["requests"][0]["status"] == 204


def test_a_new_chat_resumes_idle_and_loads_no_messages(live, aisdk_chat):
    """``useChat({id, resume: true})`` on a chat id not used yet: 204, no error."""
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"

    resumed, loaded = use_chat(aisdk_chat, live, chat_id, [{"resume": True}, {"load": True}])
    refused = httpx.get(
        f"{live.base_url}/api/chat/{chat_id}/stream", headers={"Authorization": "Bearer sk_wrong"}, timeout=10
    )

    assert [(r["method"], r["status"]) for r in resumed["requests"]] == [("GET", 204)]
    assert resumed["status"] == "ready"
    assert resumed.get("error") is None
    assert loaded["messages"] == []
    assert not Session.objects.filter(chat_id=chat_id).exists()
    # The resume's errors are in the SDK's error shape, as the POST's are.
    assert refused.status_code == 401
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["code"] == "not_authenticated"


def test_an_approval_and_a_client_tool_continue_the_same_message(live, aisdk_chat):
    live.agent.tools = [DELETE_ORDER]
    live.agent.save()
    live.script(
        [("tool_call", {"id": "a", "name": "delete_order", "arguments": '{"order": 7}'})],
        [("text", "Order 7 is deleted.")],
    )
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"

    asked, approved, answered = use_chat(
        aisdk_chat, live, chat_id, [{"send": "Delete order 7"}, {"approve": True}, {"output": {"deleted": 7}}]
    )

    run = Run.objects.get(session__chat_id=chat_id)
    call = ToolCall.objects.get(run=run)
    reply_id = str(run.agent_message.uuid)
    assert asked["finishReason"] == "tool-calls"
    (part,) = [p for p in asked["messages"][-1]["parts"] if p["type"] == "tool-delete_order"]
    assert part["state"] == "approval-requested"
    assert part["approval"]["id"] == call.call_id
    # The approval goes back in the messages the SDK sends; the same message goes on.
    assert [(r["method"], r["status"]) for r in approved["requests"]] == [("POST", 200)]
    assert approved["finishReason"] == "tool-calls"  # now the client must run it
    assert [m["id"] for m in approved["messages"]] == [asked["messages"][0]["id"], reply_id]
    assert answered["finishReason"] == "stop"
    assert [m["role"] for m in answered["messages"]] == ["user", "assistant"]
    (final,) = [p for p in answered["messages"][-1]["parts"] if p["type"] == "tool-delete_order"]
    assert final["state"] == "output-available"
    assert final["output"] == {"deleted": 7}
    assert text_of(answered["messages"][-1]) == "Order 7 is deleted."
    run.refresh_from_db()
    call.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert call.status == ToolCall.Status.SUCCEEDED
    assert call.decided_by.startswith("user:")
    assert call.output == {"deleted": 7}
    assert run.agent_message.text == "Order 7 is deleted."


def test_a_resume_during_a_pause_replays_up_to_the_request(live, aisdk_chat):
    live.agent.tools = [DELETE_ORDER]
    live.agent.save()
    live.script([("tool_call", {"id": "a", "name": "delete_order", "arguments": '{"order": 9}'})])
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"

    (asked,) = use_chat(aisdk_chat, live, chat_id, [{"send": "Delete order 9"}])
    (resumed,) = use_chat(aisdk_chat, live, chat_id, [{"resume": True}])

    assert Run.objects.get(session__chat_id=chat_id).status == Run.Status.REQUIRES_ACTION
    assert resumed["requests"][0]["status"] == 200
    assert resumed["finishReason"] == "tool-calls"
    assert resumed["messages"][-1]["id"] == asked["messages"][-1]["id"]
    (part,) = [p for p in resumed["messages"][-1]["parts"] if p["type"] == "tool-delete_order"]
    assert part["state"] == "approval-requested"


def test_regenerate_replaces_the_reply(live, aisdk_chat):
    live.script([("text", "First try.")], [("text", "Second try.")])
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"

    first, regenerated = use_chat(aisdk_chat, live, chat_id, [{"send": "Name a cat"}, {"regenerate": True}])

    session = Session.objects.get(chat_id=chat_id)
    old, new = session.messages.filter(sender_role=Message.SenderRole.AGENT).order_by("created_at")
    assert text_of(first["messages"][-1]) == "First try."
    assert [m["role"] for m in regenerated["messages"]] == ["user", "assistant"]
    assert regenerated["messages"][-1]["id"] == str(new.uuid)
    assert text_of(regenerated["messages"][-1]) == new.text == "Second try."
    assert old.replaced_by_id == new.pk
    assert session.messages.filter(sender_role=Message.SenderRole.USER).count() == 1
    stored = stored_messages(live, chat_id)
    assert [m["id"] for m in stored][1:] == [str(new.uuid)]


def test_stop_ends_the_run_and_keeps_the_partial_text(live, aisdk_chat):
    live.script([("text", "one "), ("delay", 1), ("text", "two"), ("delay", 1), ("text", " three")])
    chat_id = f"chat-{uuid.uuid4().hex[:8]}"

    (stopped,) = use_chat(aisdk_chat, live, chat_id, [{"send": "Count", "stop": "text-delta"}])

    run = live.wait_run(str(Run.objects.get(session__chat_id=chat_id).uuid))
    assert stopped["status"] == "ready"
    assert [r["method"] for r in stopped["requests"]] == ["POST", "POST"]
    assert stopped["requests"][1]["url"].endswith(f"/api/chat/{chat_id}/stop")
    assert stopped["requests"][1]["status"] == 200
    assert run.status == Run.Status.STOPPED, (run.error_code, run.error_message)
    assert run.agent_message.text in {"one ", "one two"}  # the worker sees the stop at its next chunk
