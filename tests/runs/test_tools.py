"""Tools in a turn, driven in-process with a scripted model and a real webhook receiver
on loopback that checks Genie's signature: execution, approvals (approve, deny, twice),
parallel calls, schema-invalid input, and a redelivered continuation that must not run
a tool twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from django.utils import timezone

from chat.models import Session
from genie.models import AccessToken
from genie.services import create_access_token
from runs import loop, services
from runs.exceptions import ActionAlreadyAnswered
from runs.models import Run, ToolCall
from runs.recovery import sweep_runs
from runs.tools import CallContext, ToolError, ToolSpec
from runs.tools.webhook import WebhookTool, signature
from tests.factories import RunFactory
from tests.runs.conftest import published_data, published_types, text, tool_call
from tests.webhooks import WebhookReceiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def webhook_run(receiver: WebhookReceiver, **spec: object) -> Run:
    tool = {"name": "weather", "kind": "webhook", "url": receiver.url, "input_schema": SCHEMA, **spec}
    run = RunFactory(session__agent__tools=[tool], session__user_id="customer-42")
    receiver.secret = run.session.agent.webhook_secret
    return run


def test_a_webhook_gets_the_end_user_the_sessions_creator_vouches_for(script, enqueued, receiver):
    # A browser's publishable key may send any user_id: the webhook is told only "this visitor".
    run = webhook_run(receiver)
    publishable, _ = create_access_token(team=run.session.team, kind=AccessToken.Kind.PUBLISHABLE)
    Session.objects.filter(pk=run.session.pk).update(created_by_token=publishable, user_id="the-ceo")
    script(tool_call("weather", '{"city": "Oslo"}'), text("Sunny."))

    loop.execute_run(run.pk)

    (call,) = receiver.calls
    assert call["user_id"] == f"session:{run.session.uuid}"


def reload(run: Run) -> Run:
    return Run.objects.select_related("agent_message", "session").get(pk=run.pk)


def test_a_webhook_tool_runs_signed_and_its_output_goes_back_to_the_model(script, enqueued, receiver):
    run = webhook_run(receiver)
    provider = script(tool_call("weather", '{"city": "Oslo"}'), text("It is sunny."))

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert [tool.name for tool in provider.requests[0].tools] == ["weather"]
    assert provider.requests[0].tools[0].input_schema == SCHEMA
    (call,) = receiver.calls
    assert call["tool"] == "weather"
    assert call["input"] == {"city": "Oslo"}
    assert (call["session_uuid"], call["run_uuid"], call["user_id"]) == (
        str(run.session.uuid),
        str(run.uuid),
        "customer-42",
    )
    assert published_types(run)[:11] == [
        "start",
        "start-step",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
    ]
    assert published_data(run, "tool-output-available")[0]["output"] == {"echo": {"city": "Oslo"}}
    assert json.loads(provider.requests[1].messages[-1]["content"]) == {"echo": {"city": "Oslo"}}
    stored = ToolCall.objects.get(run=run)
    assert (stored.status, stored.output, stored.kind) == (
        ToolCall.Status.SUCCEEDED,
        {"echo": {"city": "Oslo"}},
        "webhook",
    )


def test_the_signature_is_hmac_sha256_of_timestamp_and_body():
    expected = hmac.new(b"whsec_x", b"1700000000.{}", hashlib.sha256).hexdigest()

    assert signature("whsec_x", 1700000000, b"{}") == f"t=1700000000,v1={expected}"


def test_an_input_the_schema_refuses_is_an_error_the_model_sees(script, enqueued, receiver):
    run = webhook_run(receiver)
    provider = script(tool_call("weather", '{"town": "Oslo"}'), text("Which city?"))

    loop.execute_run(run.pk)

    assert receiver.calls == []
    (error,) = published_data(run, "tool-output-error")
    assert "city" in error["errorText"]
    assert "city" in provider.requests[1].messages[-1]["content"]
    assert reload(run).status == Run.Status.SUCCEEDED


def test_a_tool_needing_approval_pauses_and_runs_once_approved(script, enqueued, receiver):
    run = webhook_run(receiver, requires_approval=True)
    script(tool_call("weather", '{"city": "Oslo"}'), text("Done."))

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.REQUIRES_ACTION
    assert receiver.calls == []
    call = ToolCall.objects.get(run=run)
    assert call.status == ToolCall.Status.PENDING_APPROVAL
    assert published_types(run)[-3:] == ["tool-approval-request", "data-approval-required", "finish-step"]
    (request,) = published_data(run, "tool-approval-request")
    assert request == {"type": "tool-approval-request", "approvalId": call.call_id, "toolCallId": call.call_id}
    (required,) = published_data(run, "data-approval-required")
    assert required["data"]["approval_url"].endswith(f"/sessions/{run.session.uuid}/tool-calls/{call.call_id}/approval")
    assert required["data"]["input"] == {"city": "Oslo"}

    services.decide_tool_call(session=run.session, call_id=call.call_id, approved=True, reason="", decided_by="user:x")
    with pytest.raises(ActionAlreadyAnswered):
        services.decide_tool_call(session=run.session, call_id=call.call_id, approved=False, reason="", decided_by="u")
    loop.execute_run(run.pk)

    assert reload(run).status == Run.Status.SUCCEEDED
    assert len(receiver.calls) == 1
    types = published_types(run)
    assert types.index("tool-approval-response") < types.index("tool-output-available")
    assert published_data(run, "tool-approval-response") == [
        {"type": "tool-approval-response", "approvalId": call.call_id, "approved": True}
    ]
    call.refresh_from_db()
    assert (call.status, call.decided_by) == (ToolCall.Status.SUCCEEDED, "user:x")


def test_a_denied_call_is_not_run_and_the_model_is_told(script, enqueued, receiver):
    run = webhook_run(receiver, requires_approval=True)
    provider = script(tool_call("weather", '{"city": "Oslo"}'), text("As you wish."))
    loop.execute_run(run.pk)
    call = ToolCall.objects.get(run=run)

    services.decide_tool_call(
        session=run.session, call_id=call.call_id, approved=False, reason="not now", decided_by="user:x"
    )
    loop.execute_run(run.pk)

    assert receiver.calls == []
    assert published_data(run, "tool-output-denied") == [{"type": "tool-output-denied", "toolCallId": call.call_id}]
    assert published_data(run, "tool-approval-response") == [
        {"type": "tool-approval-response", "approvalId": call.call_id, "approved": False, "reason": "not now"}
    ]
    assert "denied" in provider.requests[1].messages[-1]["content"]
    assert "not now" in provider.requests[1].messages[-1]["content"]
    assert reload(run).status == Run.Status.SUCCEEDED


def test_parallel_calls_each_get_their_events_and_outcome(script, enqueued, receiver):
    run = webhook_run(receiver)
    oslo = tool_call("weather", '{"city": "Oslo"}', index=0, call_id="p-0")[:2]
    rome = tool_call("weather", '{"city": "Rome"}', index=1, call_id="p-1")
    provider = script([*oslo, *rome], text("Both sunny."))

    loop.execute_run(run.pk)

    calls = list(ToolCall.objects.filter(run=run).order_by("position"))
    assert [call.input for call in calls] == [{"city": "Oslo"}, {"city": "Rome"}]
    assert [call.status for call in calls] == [ToolCall.Status.SUCCEEDED] * 2
    outputs = published_data(run, "tool-output-available")
    assert [o["toolCallId"] for o in outputs] == [call.call_id for call in calls]
    tool_messages = [m for m in provider.requests[1].messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["p-0", "p-1"]


def test_a_redelivered_continuation_never_runs_a_tool_twice(script, enqueued, receiver):
    run = webhook_run(receiver, requires_approval=True)
    script(tool_call("weather", '{"city": "Oslo"}'), text("Done."))
    loop.execute_run(run.pk)
    call = ToolCall.objects.get(run=run)
    services.decide_tool_call(session=run.session, call_id=call.call_id, approved=True, reason="", decided_by="u")
    call.claim_execution()  # a first continuation took the call, then its worker died
    Run.objects.filter(pk=run.pk).update(status=Run.Status.QUEUED)  # and the sweeper re-queued the run

    loop.execute_run(run.pk)

    assert receiver.calls == []
    call.refresh_from_db()
    assert call.status == ToolCall.Status.FAILED
    assert "not run again" in call.error
    assert reload(run).status == Run.Status.SUCCEEDED


def test_a_model_without_function_calling_is_offered_no_tools_and_none_runs(script, enqueued, receiver):
    run = webhook_run(receiver)
    provider = script(tool_call("weather", '{"city": "Oslo"}'), text("I cannot check."))
    provider.supports_tools = False  # as the embedded local model

    loop.execute_run(run.pk)

    assert provider.requests[0].tools == ()
    assert receiver.calls == []
    assert ToolCall.objects.get(run=run).status == ToolCall.Status.FAILED


def test_a_webhook_that_drips_its_answer_past_the_timeout_is_a_tool_error(receiver):
    """httpx's timeout bounds each read; the call's own deadline bounds the whole answer."""

    class Drip(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            for piece in '{"late": true}':
                self.wfile.write(piece.encode())
                self.wfile.flush()
                time.sleep(0.2)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = ToolSpec(name="slow", kind="webhook", url=f"http://127.0.0.1:{server.server_address[1]}/", timeout=1)
    tool = WebhookTool()
    try:
        with pytest.raises(ToolError, match="within 1 s"):
            tool.call(tool.offers(spec)[0], {}, CallContext(call_id="c", session_uuid="s", run_uuid="r", user_id=""))
    finally:
        server.shutdown()


def test_an_unexpected_exception_in_a_tool_is_a_tool_error_the_model_sees(script, enqueued, receiver):
    # Issue 26, finding 13: it crashed the turn (retried three times, then worker_lost).
    run = webhook_run(receiver)
    provider = script(tool_call("weather", '{"city": "Oslo"}'), text("The weather service is down."))

    with mock.patch.object(WebhookTool, "call", side_effect=RuntimeError("a bug")):
        loop.execute_run(run.pk)

    run = reload(run)
    (error,) = published_data(run, "tool-output-error")
    assert error["errorText"] == "The tool failed unexpectedly."
    assert "failed unexpectedly" in provider.requests[1].messages[-1]["content"]
    assert ToolCall.objects.get(run=run).status == ToolCall.Status.FAILED
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "The weather service is down."


class WorkerKilled(BaseException):
    """The worker process dies here (kill -9): nothing after this point runs."""


def killed_during_its_first_webhook_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver gets the first call and answers; its worker dies before storing the outcome."""
    real_call, calls = WebhookTool.call, []

    def call(self: WebhookTool, offered: object, arguments: dict, context: CallContext) -> object:
        output = real_call(self, offered, arguments, context)
        calls.append(context.call_id)
        if len(calls) == 1:
            raise WorkerKilled
        return output

    monkeypatch.setattr(WebhookTool, "call", call)


def crash_and_sweep(run: Run) -> None:
    """The worker died during the call; its lease expires and the sweeper takes the run over."""
    with pytest.raises(WorkerKilled):
        loop.execute_run(run.pk)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert sweep_runs()["requeued"] == 1


def test_a_call_whose_worker_died_during_it_ends_outcome_unknown_and_the_model_is_not_asked_again(
    script, enqueued, receiver, monkeypatch
):
    # Text before the call: the run was seen by clients, and is still resumed (not failed worker_lost).
    run = webhook_run(receiver)
    script([*text("Let me refund that."), *tool_call("weather", '{"city": "Oslo"}')])
    killed_during_its_first_webhook_call(monkeypatch)
    crash_and_sweep(run)
    call = ToolCall.objects.get(run=run)
    assert call.status == ToolCall.Status.RUNNING  # its outcome is unknown

    provider = script(text(" I could not confirm it."))  # the next worker's model
    loop.execute_run(run.pk)

    assert len(receiver.calls) == 1  # the side effect happened at most once
    assert receiver.idempotency_keys == [call.call_id]
    assert ToolCall.objects.filter(run=run).count() == 1  # no new call: the model was not asked to call again
    call.refresh_from_db()
    assert call.status == ToolCall.Status.FAILED
    assert call.error.startswith("outcome_unknown")
    (request,) = provider.requests  # the next step, with the recorded call and its unknown outcome
    assistant, result = request.messages[-2:]
    assert assistant["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city": "Oslo"}'}
    assert result["role"] == "tool"
    assert "outcome_unknown" in result["content"]
    assert published_data(run, "tool-output-error") == [
        {"type": "tool-output-error", "toolCallId": call.call_id, "errorText": call.error}
    ]
    types = published_types(run)
    assert types.count("start") == 1
    assert types[types.index("tool-input-available") :][:4] == [
        "tool-input-available", "tool-output-error", "finish-step", "start-step"
    ]  # fmt: skip
    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "Let me refund that. I could not confirm it."


def test_an_idempotent_tools_call_is_run_again_with_the_same_call_id(script, enqueued, receiver, monkeypatch):
    run = webhook_run(receiver, idempotent=True)
    script(tool_call("weather", '{"city": "Oslo"}'))
    killed_during_its_first_webhook_call(monkeypatch)
    crash_and_sweep(run)

    provider = script(text("Sunny."))
    loop.execute_run(run.pk)

    call = ToolCall.objects.get(run=run)
    assert [body["call_id"] for body in receiver.calls] == [call.call_id, call.call_id]
    assert receiver.idempotency_keys == [call.call_id, call.call_id]  # the receiver can de-duplicate
    assert (call.status, call.output) == (ToolCall.Status.SUCCEEDED, {"echo": {"city": "Oslo"}})
    assert len(provider.requests) == 1
    assert published_data(run, "tool-output-available")[0]["toolCallId"] == call.call_id
    assert reload(run).status == Run.Status.SUCCEEDED


def test_a_call_running_when_its_run_fails_worker_lost_ends_outcome_unknown(script, enqueued, receiver, monkeypatch):
    run = webhook_run(receiver)
    script(tool_call("weather", '{"city": "Oslo"}'))
    killed_during_its_first_webhook_call(monkeypatch)
    with pytest.raises(WorkerKilled):
        loop.execute_run(run.pk)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1), attempts=3)

    assert sweep_runs()["failed"] == 1

    call = ToolCall.objects.get(run=run)
    assert (call.status, call.error.split(":")[0]) == (ToolCall.Status.FAILED, "outcome_unknown")
    assert published_types(run)[-4:] == ["tool-output-error", "error", "finish-step", "finish"]
    assert len(receiver.calls) == 1


def test_a_stop_during_a_webhook_call_does_not_wait_for_the_tool(script, enqueued, receiver):
    run = webhook_run(receiver, timeout=60)
    script(tool_call("weather", '{"city": "Oslo"}'), text("never asked"))
    receiver.hold = threading.Event()  # the tool does not answer until the test lets it

    def stop_once_the_call_is_in() -> None:
        assert receiver.arrived.wait(20)
        services.stop_session(session=run.session)

    stopper = threading.Thread(target=stop_once_the_call_is_in)
    stopper.start()
    try:
        loop.execute_run(run.pk)  # returns while the receiver still holds the call
        assert not receiver.hold.is_set()
    finally:
        receiver.hold.set()
        stopper.join()

    run = reload(run)
    assert run.status == Run.Status.STOPPED
    call = ToolCall.objects.get(run=run)
    assert (call.status, call.error.split(":")[0]) == (ToolCall.Status.FAILED, "outcome_unknown")
    assert published_data(run, "tool-output-error") == [
        {"type": "tool-output-error", "toolCallId": call.call_id, "errorText": call.error}
    ]
    assert published_types(run)[-2:] == ["abort", "finish"]


def test_a_worker_killed_right_after_publishing_an_outcome_does_not_report_it_twice(
    script, enqueued, receiver, monkeypatch
):
    """The narrow window of issue 26: the worker published a call's outcome and died before
    its checkpoint noted it. The next worker finds the outcome in the run's log and does
    not send a second ``tool-output-available``."""
    run = webhook_run(receiver)
    script(tool_call("weather", '{"city": "Oslo"}'))
    end_step = loop.Turn.end_step

    def killed(turn: loop.Turn, *, settled: bool) -> None:
        raise WorkerKilled  # after the outcome went out, before the checkpoint that notes it

    monkeypatch.setattr(loop.Turn, "end_step", killed)
    crash_and_sweep(run)
    monkeypatch.setattr(loop.Turn, "end_step", end_step)
    script(text("Sunny."))
    loop.execute_run(run.pk)

    types = published_types(run)
    assert types.count("tool-output-available") == 1
    assert types.count("start-step") == types.count("finish-step") == 2
    assert len(receiver.calls) == 1
    assert reload(run).status == Run.Status.SUCCEEDED


def test_a_worker_killed_between_a_steps_finish_and_its_pause_sends_no_second_finish_step(
    script, enqueued, receiver, monkeypatch
):
    """The other window: the step's ``finish-step`` went out, then the worker died before
    the pause was stored. The next worker sees the step closed in the log and does not
    close it again."""
    run = webhook_run(receiver, requires_approval=True)
    script(tool_call("weather", '{"city": "Oslo"}'))
    pause_run = loop.pause_run

    def killed(**_: object) -> bool:
        raise WorkerKilled

    monkeypatch.setattr(loop, "pause_run", killed)
    crash_and_sweep(run)
    monkeypatch.setattr(loop, "pause_run", pause_run)
    loop.execute_run(run.pk)

    assert reload(run).status == Run.Status.REQUIRES_ACTION
    assert published_types(run).count("finish-step") == 1
    call = ToolCall.objects.get(run=run)
    services.decide_tool_call(session=run.session, call_id=call.call_id, approved=True, reason="", decided_by="u")
    script(text("Sunny."))
    loop.execute_run(run.pk)

    types = published_types(run)
    assert types.count("start-step") == types.count("finish-step") == 2
    assert types.count("tool-approval-request") == 1
    assert reload(run).status == Run.Status.SUCCEEDED
