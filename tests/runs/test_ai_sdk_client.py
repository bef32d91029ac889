"""The real AI SDK client (the ``ai`` npm package, v7, pinned in tests/aisdk) reads
Genie's run streams with parallel tool calls, an approval and client tools: its own SSE
parser, chunk schemas and ordering rules accept every event, and the UIMessage it
assembles has the parts the transcript stores (tool call ids and outputs, the text).

The reader (tests/aisdk/read_stream.mjs) resumes a run's stream as ``useChat`` does
(``DefaultChatTransport.reconnectToStream``) and assembles it with ``readUIMessageStream``;
any schema or ordering error exits non-zero with the SDK's error on stderr."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runs.models import Run

pytestmark = pytest.mark.live

AISDK = Path(__file__).resolve().parent.parent / "aisdk"

NAVIGATE = {"name": "navigate", "kind": "client", "description": "Open a page of the app."}
DELETE_ORDER = {"name": "delete_order", "kind": "client", "requires_approval": True, "description": "Delete an order."}


@pytest.fixture(scope="session")
def aisdk_reader() -> Path:
    """tests/aisdk installed from its lock file (CI installs nodejs and npm)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the AI SDK client test (apt-get install nodejs npm)")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=AISDK,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed in {AISDK}:\n{done.stdout}\n{done.stderr}"
    return AISDK / "read_stream.mjs"


# The reader's exit code when it read the stream but the UIMessage it assembled fails the
# SDK's own ``validateUIMessages`` (1: the SDK refused the stream itself; see read_stream.mjs).
INVALID_MESSAGE = 3


@dataclass
class SdkRead:
    returncode: int
    stderr: str
    message: dict[str, Any]
    tool_states: dict[str, list[str]]
    chunk_types: list[str]

    @property
    def parts(self) -> list[dict[str, Any]]:
        return self.message["parts"]

    def tool_parts(self) -> dict[str, dict[str, Any]]:
        return {part["toolCallId"]: part for part in self.parts if part["type"].startswith("tool-")}

    @property
    def text(self) -> str:
        return "".join(part["text"] for part in self.parts if part["type"] == "text")


def read_with_ai_sdk(reader: Path, live, url: str) -> SdkRead:
    """What the AI SDK assembled from ``url``; fails with the SDK's error when it refused it."""
    done = subprocess.run(
        ["node", str(reader), url, json.dumps(live.headers)],
        cwd=AISDK,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, INVALID_MESSAGE), (
        f"GENIE BUG: the AI SDK client refused Genie's stream {url} (a chunk failing the SDK's "
        f"schema, or events out of the order the SDK enforces). The SDK's error:\n{done.stderr}"
    )
    read = json.loads(done.stdout)
    return SdkRead(done.returncode, done.stderr, read["message"], read["toolStates"], read["chunkTypes"])


def assert_assembled_message_is_valid(read: SdkRead) -> None:
    """The UIMessage the SDK assembled passes the SDK's ``validateUIMessages`` (a ``useChat``
    app sends it back to its server, which validates it)."""
    assert read.returncode == 0, (
        "GENIE BUG: the AI SDK read the stream, but the UIMessage it assembled fails the SDK's own "
        "validateUIMessages: a tool part that went through an approval ends output-available / "
        "output-denied with `approval: {id}` and no `approved` (the schema wants `approved: true` "
        "for output-available, `approved: false` for output-denied). Genie never streams the v7 chunk "
        "`tool-approval-response {approvalId, approved, reason?}` when the decision is made through "
        f"POST .../tool-calls/{{call_id}}/approval. The SDK's error:\n{read.stderr[:1500]}"
    )


def assert_went_through_an_approval(states: list[str], *, ends: str) -> None:
    """The part's states as the SDK gave them: streamed input, the approval request, then
    the outcome (``approval-responded`` in between once Genie streams the decision)."""
    assert states[:3] == ["input-streaming", "input-available", "approval-requested"], states
    assert states[3:] in ([ends], ["approval-responded", ends]), states


def with_tools(live, *tools: dict[str, Any]) -> None:
    live.agent.tools = list(tools)
    live.agent.save()


def wait_actions(live, session_uuid: str, run_uuid: str, expected: set[tuple[str, str]], timeout: float = 20):
    """The run waits ``requires_action`` with exactly ``expected`` (type, tool_name) pending;
    returns the pending actions by tool name."""
    deadline = time.monotonic() + timeout
    actions: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if Run.objects.get(uuid=run_uuid).status == Run.Status.REQUIRES_ACTION:
            actions = live.api("GET", f"sessions/{session_uuid}").json()["pending_actions"]
            if {(a["type"], a["tool_name"]) for a in actions} == expected:
                return {a["tool_name"]: a for a in actions}
        time.sleep(0.05)
    raise TimeoutError(f"run {run_uuid} never waited for {expected} (pending: {actions})")


def answer(live, action: dict[str, Any], body: dict[str, Any]) -> None:
    response = live.api("POST", action["url"].split("/api/v1/", 1)[1], json=body)
    assert response.status_code == 200, response.text


def run_stream_url(live, session_uuid: str, run_uuid: str) -> str:
    """The run's own stream: without Last-Event-ID it replays the run from its ``start``."""
    return f"{live.base_url}/api/v1/sessions/{session_uuid}/runs/{run_uuid}/stream"


def agent_message(live, session_uuid: str) -> dict[str, Any]:
    (message,) = [
        m for m in live.api("GET", f"sessions/{session_uuid}/messages").json()["results"] if m["sender_role"] == "agent"
    ]
    return message


def test_parallel_calls_an_approval_and_client_tools_read_by_the_ai_sdk(live, aisdk_reader):
    with_tools(live, NAVIGATE, DELETE_ORDER)
    live.script(
        [
            ("tool_call", {"id": "a", "name": "delete_order", "arguments": '{"order": 7}'}),
            ("tool_call", {"id": "b", "name": "navigate", "arguments": '{"to": "/orders"}'}),
        ],
        [("text", "Order 7 is deleted; "), ("text", "here are your orders.")],
    )
    created = live.start_session("Delete order 7 and show my orders")
    session, run_uuid = created["uuid"], created["run_uuid"]

    first = wait_actions(live, session, run_uuid, {("approval", "delete_order"), ("client_tool", "navigate")})
    answer(live, first["delete_order"], {"approved": True})
    answer(live, first["navigate"], {"output": {"opened": "/orders"}})
    # The continuation asks the client for the approved client tool.
    second = wait_actions(live, session, run_uuid, {("client_tool", "delete_order")})
    answer(live, second["delete_order"], {"output": {"deleted": 7}})
    run = live.wait_run(run_uuid)
    read = read_with_ai_sdk(aisdk_reader, live, run_stream_url(live, session, run_uuid))
    transcript = agent_message(live, session)

    assert run.status == Run.Status.SUCCEEDED
    assert "error" not in read.chunk_types
    assert read.chunk_types[0] == "start"
    assert read.chunk_types[-1] == "finish"
    assert read.message["id"] == transcript["uuid"]
    delete_id, navigate_id = first["delete_order"]["call_id"], first["navigate"]["call_id"]
    assert [part["type"] for part in read.parts if not part["type"].startswith("data-")] == [
        "step-start",
        "tool-delete_order",
        "tool-navigate",
        "step-start",
        "text",
    ]
    tools = read.tool_parts()
    assert {call_id: part["state"] for call_id, part in tools.items()} == {
        delete_id: "output-available",
        navigate_id: "output-available",
    }
    assert_went_through_an_approval(read.tool_states[delete_id], ends="output-available")
    assert read.tool_states[navigate_id] == ["input-streaming", "input-available", "output-available"]
    assert tools[delete_id]["approval"]["id"] == delete_id
    assert tools[delete_id]["input"] == {"order": 7}
    assert tools[navigate_id]["input"] == {"to": "/orders"}
    assert {call_id: part["output"] for call_id, part in tools.items()} == {
        call["call_id"]: call["output"] for call in transcript["tool_calls"]
    }
    assert {call["call_id"]: call["output"] for call in transcript["tool_calls"]} == {
        delete_id: {"deleted": 7},
        navigate_id: {"opened": "/orders"},
    }
    assert read.text == transcript["text"] == "Order 7 is deleted; here are your orders."
    data = [(part["type"], part["data"]["call_id"]) for part in read.parts if part["type"].startswith("data-")]
    assert data == [
        ("data-approval-required", delete_id),
        ("data-client-tool-call", navigate_id),
        ("data-client-tool-call", delete_id),
    ]
    assert_assembled_message_is_valid(read)


def test_a_denied_approval_reads_as_output_denied(live, aisdk_reader):
    with_tools(live, DELETE_ORDER)
    live.script(
        [("tool_call", {"id": "a", "name": "delete_order", "arguments": '{"order": 8}'})],
        [("text", "I kept order 8.")],
    )
    created = live.start_session("Delete order 8")
    session, run_uuid = created["uuid"], created["run_uuid"]

    pending = wait_actions(live, session, run_uuid, {("approval", "delete_order")})
    answer(live, pending["delete_order"], {"approved": False, "reason": "not today"})
    run = live.wait_run(run_uuid)
    read = read_with_ai_sdk(aisdk_reader, live, run_stream_url(live, session, run_uuid))
    transcript = agent_message(live, session)

    assert run.status == Run.Status.SUCCEEDED
    assert "error" not in read.chunk_types
    delete_id = pending["delete_order"]["call_id"]
    ((call_id, part),) = read.tool_parts().items()
    (call,) = transcript["tool_calls"]
    assert call_id == call["call_id"] == delete_id
    assert call["status"] == "denied"
    assert part["type"] == "tool-delete_order"
    assert part["state"] == "output-denied"
    assert_went_through_an_approval(read.tool_states[delete_id], ends="output-denied")
    assert part["approval"]["id"] == delete_id
    assert [p["type"] for p in read.parts if not p["type"].startswith("data-")] == [
        "step-start",
        "tool-delete_order",
        "step-start",
        "text",
    ]
    assert read.text == transcript["text"] == "I kept order 8."
    assert_assembled_message_is_valid(read)
