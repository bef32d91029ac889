"""Seeds 002 and 003 over real HTTP: a real Daphne relays the stream, a real worker writes
the reply with the scripted model."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from chat.models import Message, Session
from runs.models import ToolCall

pytestmark = pytest.mark.live


def chat_api(live, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{live.base_url}{path}", headers=live.headers, timeout=30, **kwargs)


def warm_up(live) -> None:
    """One turn first: a cold worker's first turn can outlast GENIE_SYNC_TIMEOUT (3 s here)."""
    live.script([("text", "warm")])
    live.warm_up()


def titled(chat_id: str) -> None:
    """A titled chat: no title task asks the scripted model between the test's turns."""
    Session.objects.filter(uuid=chat_id).update(title="Test")


def test_seed002_message_answers_with_the_reply_the_worker_wrote(live):
    warm_up(live)
    live.fake_llm.replace_script(live.agent.model, [("delay", 0.2), ("text", "Nine "), ("text", "to five.")])
    chat = chat_api(live, "POST", "/chat", json={"agentId": live.agent.handle, "userId": "u_9"}).json()

    reply = chat_api(live, "POST", f"/chat/{chat['id']}/message", json={"content": "Hours?", "role": "user"})
    messages = chat_api(live, "GET", f"/chat/{chat['id']}/message").json()["messages"]

    assert reply.status_code == 200
    assert reply.json()["content"] == "Nine to five."
    assert reply.json()["role"] == "assistant"
    assert reply.json()["chatId"] == chat["id"]
    assert [(m["role"], m["content"]) for m in messages] == [("user", "Hours?"), ("assistant", "Nine to five.")]


def test_seed003_send_compact_usage_and_a_ui_command(live):
    live.agent.tools = [{"name": "navigate", "kind": "client"}]
    live.agent.save()
    live.script(
        [("text", "The team "), ("text", "plan.")],
        [("text", "Earlier: plans.")],  # the compaction's summary
        [("tool_call", {"id": "c", "name": "navigate", "arguments": '{"to": "/pricing"}'})],
        [("text", "Here "), ("text", "it is.")],
    )
    chat_id = chat_api(live, "POST", "/chat", json={"agentId": live.agent.handle}).json()["id"]
    titled(chat_id)
    base = f"{live.base_url}/api/v1/chat/sessions/{chat_id}"
    body = {
        "content": "Which plan?",
        "uiContext": {"currentPage": "/pricing"},
        "scanContext": {"tabTitle": "Pricing", "pageUrl": "https://example.com/pricing"},
    }

    sent = live.read_stream(f"{base}/messages", method="POST", json=body)
    compacted = live.read_stream(f"{base}/compact", method="POST", json={"keep_last": 1})
    usage = chat_api(live, "GET", f"/api/v1/chat/sessions/{chat_id}/context-usage").json()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(live.read_stream, f"{base}/messages", method="POST", json={"content": "Show me"})
        call = wait_for_command(chat_id)
        answer = chat_api(
            live,
            "POST",
            "/api/v1/chat/command",
            json={"session_id": chat_id, "call_id": call.call_id, "output": {"navigated": True}},
        )
        commanded = pending.result(timeout=30)

    assert sent.status == 200
    assert [e.data["type"] for e in sent.events] == ["token", "token", "done"]
    assert all(e.id is None for e in sent.events)  # data lines only, as the document shows
    done = sent.events[-1].data
    assert done["message"]["content"] == "The team plan."
    assert done["message"]["id"] == sent.headers["genie-message-uuid"]
    assert Message.objects.get(uuid=done["message"]["id"]).text == "The team plan."
    assert done["metadata"]["status"] == "complete"
    assert "usage" in done["metadata"]
    prompt = " ".join(m["content"] for m in live.fake_llm.requests[live.agent.model][0]["messages"])
    assert "/pricing" in prompt
    assert '"tabTitle": "Pricing"' in prompt
    assert compacted.status == 200
    assert compacted.types == ["token", "done"]  # seed 003's events, not the AI SDK's
    assert compacted.events[0].data["content"] == "Earlier: plans."
    assert set(compacted.events[-1].data["metadata"]["compaction"]) == {
        "before_tokens",
        "after_tokens",
        "messages_compacted",
    }
    assert usage["last_compacted_at"] is not None
    assert answer.status_code == 200
    assert answer.json()["status"] == "succeeded"
    types = [e.data["type"] for e in commanded.events]
    assert types == ["command", "token", "token", "done"]
    assert commanded.events[0].data == {
        "type": "command",
        "call_id": call.call_id,
        "name": "navigate",
        "input": {"to": "/pricing"},
    }
    assert commanded.events[-1].data["message"]["content"] == "Here it is."
    assert commanded.events[-1].data["metadata"]["commands"] == [
        {"call_id": call.call_id, "name": "navigate", "input": {"to": "/pricing"}}
    ]


def test_seed003_a_turn_waiting_for_an_approval_ends_with_done_naming_it(live):
    live.agent.tools = [{"name": "refund", "kind": "client", "requires_approval": True}]
    live.agent.save()
    live.script([("text", "Refunding. "), ("tool_call", {"id": "r", "name": "refund", "arguments": '{"order": 7}'})])
    chat_id = chat_api(live, "POST", "/chat", json={"agentId": live.agent.handle}).json()["id"]
    titled(chat_id)

    sent = live.read_stream(
        f"{live.base_url}/api/v1/chat/sessions/{chat_id}/messages", method="POST", json={"content": "Refund 7"}
    )

    call = ToolCall.objects.get(run__session__uuid=chat_id)
    assert sent.status == 200
    assert [e.data["type"] for e in sent.events] == ["token", "done"]  # no error: the reply goes on later
    done = sent.events[-1].data
    assert done["message"]["content"] == "Refunding. "
    assert done["metadata"]["status"] == "action_required"
    (action,) = done["metadata"]["pending_actions"]
    assert (action["type"], action["call_id"], action["tool_name"]) == ("approval", call.call_id, "refund")
    assert action["input"] == {"order": 7}
    assert action["url"].endswith(f"/sessions/{chat_id}/tool-calls/{call.call_id}/approval")
    assert call.status == ToolCall.Status.PENDING_APPROVAL


def test_seed003_a_fire_and_forget_command_never_stalls_the_stream(live):
    live.agent.tools = [{"name": "navigate", "kind": "client", "wait_for_result": False}]
    live.agent.save()
    live.script(
        [("tool_call", {"id": "n", "name": "navigate", "arguments": '{"to": "/pricing"}'})],
        [("text", "Opened pricing.")],
    )
    chat_id = chat_api(live, "POST", "/chat", json={"agentId": live.agent.handle}).json()["id"]
    titled(chat_id)

    # A client that handles commands itself and never posts a result: the turn still ends.
    sent = live.read_stream(
        f"{live.base_url}/api/v1/chat/sessions/{chat_id}/messages", method="POST", json={"content": "Prices?"}
    )

    call = ToolCall.objects.get(run__session__uuid=chat_id)
    assert [e.data["type"] for e in sent.events] == ["command", "token", "done"]
    assert sent.events[0].data == {
        "type": "command",
        "call_id": call.call_id,
        "name": "navigate",
        "input": {"to": "/pricing"},
    }
    done = sent.events[-1].data
    assert (done["message"]["content"], done["metadata"]["status"]) == ("Opened pricing.", "complete")
    assert done["metadata"]["commands"] == [{"call_id": call.call_id, "name": "navigate", "input": {"to": "/pricing"}}]
    assert (call.status, call.output) == (ToolCall.Status.SUCCEEDED, {"sent": True})


def wait_for_command(session_uuid: str, timeout: float = 20) -> ToolCall:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = ToolCall.objects.filter(run__session__uuid=session_uuid, status=ToolCall.Status.AWAITING_RESULT).first()
        if call is not None:
            return call
        time.sleep(0.05)
    raise TimeoutError("the agent asked for no UI command")


def test_seed003_errors_before_the_stream_are_json_in_the_documents_voice(live):
    read = live.read_stream(
        f"{live.base_url}/api/v1/chat/sessions/5e55105e-0000-4000-8000-00000000dead/messages",
        method="POST",
        json={"content": "Hi"},
    )

    assert read.status == 404
    assert read.headers["content-type"] == "application/json"
    assert b'"type":"error"' in read.body
