"""Tools end to end over real HTTP: a real Daphne, a real Celery worker (the run pauses
and continues in new tasks), the scripted model, a real webhook receiver and a real MCP
server on loopback, reached by the worker through the egress guard."""

from __future__ import annotations

import time

import pytest

from runs.loop import execute_run
from runs.models import Run, ToolCall
from tests.runs.test_mcp_tool import mcp_server  # noqa: F401  (a module fixture: the real MCP server)

pytestmark = pytest.mark.live

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def with_tools(live, *tools: dict) -> None:
    live.agent.tools = list(tools)
    live.agent.save()


def rescript(live, *replies: list) -> None:
    """The model's next replies, whatever is left of the last script (its last reply repeats)."""
    live.fake_llm.replace_script(live.agent.model, *replies)


def wait_status(run_uuid: str, status: str, timeout: float = 20) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.get(uuid=run_uuid)
        if run.status == status:
            return run
        time.sleep(0.05)
    raise TimeoutError(f"run {run_uuid} never reached {status} (is {run.status})")


def test_a_webhook_tool_runs_once_and_the_reply_uses_its_output(live, receiver):
    with_tools(live, {"name": "weather", "kind": "webhook", "url": receiver.url, "input_schema": SCHEMA})
    receiver.secret = live.agent.webhook_secret
    live.script(
        [
            ("tool_call", {"id": "a", "name": "weather", "arguments": '{"city": "Oslo"}'}),
            ("tool_call", {"id": "b", "name": "weather", "arguments": '{"city": "Rome"}'}),
        ],
        [("text", "Sunny in both.")],
    )

    created = live.start_session("Weather in Oslo and Rome?", title="Tools")  # titled: no title task asks the model
    read = live.read_stream(created["stream_url"], last_event_id=0)
    run = live.wait_run(created["run_uuid"])

    assert read.types.count("tool-output-available") == 2
    assert read.types[-1] == "finish"
    assert read.text == "Sunny in both."
    assert sorted(call["input"]["city"] for call in receiver.calls) == ["Oslo", "Rome"]  # each exactly once
    assert execute_run(run.pk, worker_id="late-redelivery") is None
    assert len(receiver.calls) == 2
    transcript = live.api("GET", f"sessions/{created['uuid']}/messages").json()["results"]
    assert [c["output"] for c in transcript[-1]["tool_calls"]] == [
        {"echo": {"city": "Oslo"}},
        {"echo": {"city": "Rome"}},
    ]


def test_an_mcp_tool_runs_on_the_worker(live, mcp_server):  # noqa: F811
    with_tools(live, {"name": "calc", "kind": "mcp", "server_url": mcp_server.url, "allowed_tools": ["add"]})
    live.script([("tool_call", {"id": "a", "name": "calc__add", "arguments": '{"a": 2, "b": 3}'})], [("text", "5")])

    created = live.start_session("2+3?", title="Tools")  # titled: no title task asks the model
    read = live.read_stream(created["stream_url"], last_event_id=0)

    (output,) = [e.data for e in read.events if e.type == "tool-output-available"]
    assert output["output"] == {"result": 5}
    assert live.wait_run(created["run_uuid"]).status == Run.Status.SUCCEEDED
    offered = live.fake_llm.requests[live.agent.model][0]["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["calc__add"]


def test_approve_during_an_open_stream_and_a_reconnect_replays_the_request(live, receiver):
    with_tools(
        live,
        {
            "name": "refund",
            "kind": "webhook",
            "url": receiver.url,
            "requires_approval": True,
            "input_schema": {"type": "object"},
        },
    )
    receiver.secret = live.agent.webhook_secret
    live.script([("tool_call", {"id": "a", "name": "refund", "arguments": '{"order": 7}'})], [("text", "Refunded.")])
    created = live.start_session("Refund order 7", title="Tools")  # titled: no title task asks the model

    head = live.read_stream(created["stream_url"], until="data-approval-required")
    run = wait_status(created["run_uuid"], Run.Status.REQUIRES_ACTION)
    calls_before_approval = len(receiver.calls)
    replay = live.read_stream(created["stream_url"], until="data-approval-required")  # a reconnect, from the start
    action = live.api("GET", f"sessions/{created['uuid']}").json()["pending_actions"][0]
    decided = live.api("POST", action["url"].split("/api/v1/", 1)[1], json={"approved": True})
    rest = live.read_stream(created["stream_url"], last_event_id=head.ids[-1])

    assert run.lease_owner == ""  # no worker holds a paused run
    assert calls_before_approval == 0
    assert replay.types == head.types
    assert head.events[-2].type == "tool-approval-request"
    assert decided.json()["status"] == "approved"
    assert rest.types[:4] == ["finish-step", "tool-approval-response", "tool-output-available", "start-step"]
    assert rest.text == "Refunded."
    assert len(receiver.calls) == 1


def test_deny_a_client_tool_result_and_stop_while_waiting(live):
    with_tools(
        live,
        {"name": "delete_all", "kind": "client", "requires_approval": True},
        {"name": "navigate", "kind": "client"},
    )
    live.script([("tool_call", {"id": "a", "name": "delete_all", "arguments": "{}"})], [("text", "Kept everything.")])
    denied = live.start_session("Delete everything", title="Tools")  # titled: no title task asks the model
    wait_status(denied["run_uuid"], Run.Status.REQUIRES_ACTION)
    call = ToolCall.objects.get(run__uuid=denied["run_uuid"])
    live.api("POST", f"sessions/{denied['uuid']}/tool-calls/{call.call_id}/approval", json={"approved": False})
    read = live.read_stream(denied["stream_url"], last_event_id=0)

    assert "tool-output-denied" in read.types
    assert read.text == "Kept everything."

    rescript(
        live, [("tool_call", {"id": "b", "name": "navigate", "arguments": '{"to": "/cart"}'})], [("text", "There.")]
    )
    client = live.api("POST", f"sessions/{denied['uuid']}/messages", json={"text": "Go to the cart"}).json()
    wait_status(client["run_uuid"], Run.Status.REQUIRES_ACTION)
    (action,) = live.api("GET", f"sessions/{denied['uuid']}").json()["pending_actions"]
    busy = live.api("POST", f"sessions/{denied['uuid']}/messages", json={"text": "hello?"})
    answered = live.api("POST", action["url"].split("/api/v1/", 1)[1], json={"output": {"ok": True}})
    run = live.wait_run(client["run_uuid"])

    assert action["type"] == "client_tool"
    assert busy.status_code == 409  # a waiting run is an active run
    assert answered.status_code == 200
    assert run.status == Run.Status.SUCCEEDED

    rescript(live, [("tool_call", {"id": "c", "name": "navigate", "arguments": "{}"})])
    waiting = live.api("POST", f"sessions/{denied['uuid']}/messages", json={"text": "Once more"}).json()
    wait_status(waiting["run_uuid"], Run.Status.REQUIRES_ACTION)
    live.api("POST", f"sessions/{denied['uuid']}/stream/stop")
    stopped = live.wait_run(waiting["run_uuid"])

    assert stopped.status == Run.Status.STOPPED
    assert ToolCall.objects.get(run=stopped).status == ToolCall.Status.EXPIRED


def test_an_unanswered_pause_expires(live):
    with_tools(live, {"name": "navigate", "kind": "client"})
    live.script([("tool_call", {"id": "a", "name": "navigate", "arguments": "{}"})])
    created = live.start_session("Go somewhere", title="Tools")  # titled: no title task asks the model

    read = live.read_stream(created["stream_url"], last_event_id=0, timeout=30)  # stays open through the pause
    run = live.wait_run(created["run_uuid"])

    assert run.status == Run.Status.FAILED
    assert run.error_code == "action_expired"
    assert read.types[-2:] == ["error", "finish"]
    assert "ping" in read.comments
