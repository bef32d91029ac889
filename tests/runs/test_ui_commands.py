"""A client tool with ``wait_for_result: false`` is a UI command (seed 003's "typically
handled client-side"): the model is told it was sent, the turn goes on at once, the command
is in the stream, and a result posted later is only recorded."""

from __future__ import annotations

import json

import pytest

from genie.models import AccessToken
from genie.services import create_access_token
from runs import loop
from runs.events import StreamEvent
from runs.formats import AISDKChatFormat, ChatCompletionChunkFormat, Seed003Format
from runs.models import Run, ToolCall
from tests.conftest import bearer_client
from tests.factories import RunFactory
from tests.runs.conftest import published_data, published_types, text, tool_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]

NAVIGATE = {"name": "navigate", "kind": "client", "wait_for_result": False, "description": "Open a page."}


def reload(run: Run) -> Run:
    return Run.objects.select_related("agent_message", "session").get(pk=run.pk)


@pytest.fixture
def commanded(script, enqueued):
    """A turn whose model sent one UI command, then wrote its answer: run to its end."""
    run = RunFactory(session__agent__tools=[NAVIGATE])
    provider = script(tool_call("navigate", '{"to": "/pricing"}'), text("Here is pricing."))
    loop.execute_run(run.pk)
    return reload(run), provider


def test_the_model_is_told_the_command_was_sent_and_the_turn_goes_on(commanded, enqueued):
    run, provider = commanded

    call = ToolCall.objects.get(run=run)
    assert run.status == Run.Status.SUCCEEDED  # never requires_action
    assert run.agent_message.text == "Here is pricing."
    assert (call.status, call.waits_for_result, call.output) == (ToolCall.Status.SUCCEEDED, False, {"sent": True})
    (asked,) = published_data(run, "data-client-tool-call")
    assert asked["data"]["call_id"] == call.call_id
    assert asked["data"]["wait_for_result"] is False
    types = published_types(run)
    assert types.index("data-client-tool-call") < types.index("tool-output-available")
    assert provider.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "prov-1", "content": '{"sent": true}'}
    assert enqueued["continue_run"] == []


def test_a_result_posted_later_is_recorded(commanded, enqueued):
    run, _ = commanded
    call = ToolCall.objects.get(run=run)
    _, key = create_access_token(team=run.session.team, kind=AccessToken.Kind.SECRET)
    client = bearer_client(key)

    canonical = client.post(
        f"/api/v1/sessions/{run.session.uuid}/tool-calls/{call.call_id}/result", {"output": {"ok": 1}}, format="json"
    )
    seed003 = client.post(
        "/api/v1/chat/command",
        {"session_id": str(run.session.uuid), "call_id": call.call_id, "output": {"navigated": "/pricing"}},
        format="json",
    )

    assert canonical.status_code == seed003.status_code == 200
    assert canonical.json() == {"call_id": call.call_id, "status": "recorded"}
    assert seed003.json()["status"] == "recorded"
    call.refresh_from_db()
    assert (call.status, call.output) == (ToolCall.Status.SUCCEEDED, {"navigated": "/pricing"})
    assert reload(run).status == Run.Status.SUCCEEDED
    assert enqueued["continue_run"] == []


def event(seq: int, type_: str, **data) -> StreamEvent:
    return StreamEvent(seq, "r1", type_, json.dumps({"type": type_, **data}))


COMMAND = {"call_id": "c1", "tool_name": "navigate", "input": {"to": "/"}, "result_url": "u", "wait_for_result": False}
TURN = [
    event(1, "start", messageId="m1"),
    event(2, "start-step"),
    event(3, "tool-input-available", toolCallId="c1", toolName="navigate", input={"to": "/"}),
    event(4, "finish-step"),
    event(5, "data-client-tool-call", data=COMMAND),
    event(6, "tool-output-available", toolCallId="c1", output={"sent": True}),
    event(7, "start-step"),
    event(8, "text-delta", id="t", delta="Done."),
    event(9, "finish-step"),
    event(10, "finish"),
]


@pytest.mark.parametrize(
    "wire",
    [AISDKChatFormat, lambda: ChatCompletionChunkFormat(model="m"), Seed003Format],
    ids=["ai-sdk", "openai", "003"],
)
def test_no_format_ends_a_turn_at_a_ui_command(wire):
    format_ = wire()

    ended = [e.type for e in TURN if (format_.frame(e) or True) and format_.ends_after(e)]

    assert ended in ([], ["finish"])  # only the turn's own end


def test_seed_003_streams_the_command_and_lists_it_in_done():
    format_ = Seed003Format()

    written = "".join(format_.frame(e) for e in TURN)

    frames = [json.loads(line[6:]) for line in written.split("\n\n") if line.startswith("data: ")]
    assert [f["type"] for f in frames] == ["command", "token", "done"]
    assert frames[-1]["metadata"]["status"] == "complete"
    assert frames[-1]["metadata"]["commands"] == [{"call_id": "c1", "name": "navigate", "input": {"to": "/"}}]
