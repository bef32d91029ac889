"""The turn loop driven in-process with a scripted provider: real PostgreSQL and Redis,
no worker process, milliseconds per turn. Each test reads as one behaviour of a run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from chat.models import Message
from genie.models import AccessToken
from genie.services import create_access_token
from runs import loop, services
from runs.exceptions import ActionAlreadyAnswered
from runs.models import Run, ToolCall
from runs.providers import Chunk, ProviderError, ProviderRequest
from runs.recovery import sweep_runs
from tests.conftest import bearer_client
from tests.factories import RunFactory
from tests.runs.conftest import published_data, published_ids, published_types, stored_types, text, tool_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]


def text_turn(*, deltas: int) -> list[str]:
    """The events of a one-step text reply."""
    return ["start", "start-step", "text-start", *["text-delta"] * deltas, "text-end", "finish-step", "finish"]


CLIENT_LOOKUP = {"name": "lookup", "kind": "client", "description": "Look something up in the page."}


def run_with_tools(*tools: dict) -> Run:
    return RunFactory(session__agent__tools=list(tools or [CLIENT_LOOKUP]))


def call_ids(run: Run) -> list[str]:
    return list(ToolCall.objects.filter(run=run).order_by("step", "position").values_list("call_id", flat=True))


def reload(run: Run) -> Run:
    return Run.objects.select_related("agent_message", "session").get(pk=run.pk)


def test_a_text_reply_is_one_step_and_ends_with_finish_after_the_message_is_stored(script, enqueued):
    run = RunFactory()
    script([*text("Hello", " there"), Chunk(finish_reason="stop", prompt_tokens=7, completion_tokens=2)])

    loop.execute_run(run.pk)

    run = reload(run)
    assert published_types(run) == text_turn(deltas=2)
    assert stored_types(run) == published_types(run)
    assert published_ids(run) == list(range(1, 9))
    assert run.status == Run.Status.SUCCEEDED
    assert (run.lease_owner, run.lease_expires_at) == ("", None)
    assert run.agent_message.text == "Hello there"
    assert run.agent_message.status == Message.Status.COMPLETE
    assert (run.agent_message.prompt_tokens, run.agent_message.completion_tokens) == (7, 2)
    assert enqueued["generate_title"] == [run.session_id]  # the session's title was blank


def test_a_reply_cut_by_the_token_cap_is_stored_incomplete_and_its_finish_says_length(script, enqueued, member):
    run = RunFactory(session__agent__max_tokens=3, session__team=member.team, session__owner=member.user)
    script([*text("Miso, Luna,"), Chunk(finish_reason="length", prompt_tokens=9, completion_tokens=3)])

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED  # the run did its work; the reply is what is cut
    assert run.agent_message.status == Message.Status.INCOMPLETE
    assert run.agent_message.text == "Miso, Luna,"
    (finish,) = published_data(run, "finish")
    assert finish["finishReason"] == "length"
    assert published_types(run)[-2:] == ["finish-step", "finish"]
    _, key = create_access_token(team=member.team, kind=AccessToken.Kind.PERSONAL, user=member.user)
    listed = bearer_client(key).get(f"/api/v1/sessions/{run.session.uuid}/messages").json()["results"]
    assert [message["status"] for message in listed] == ["complete", "incomplete"]


def test_a_reply_the_model_ended_itself_is_complete_and_its_finish_says_stop(script, enqueued):
    run = RunFactory()
    script([*text("Miso."), Chunk(finish_reason="stop")])

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.agent_message.status == Message.Status.COMPLETE
    (finish,) = published_data(run, "finish")
    assert finish["finishReason"] == "stop"


def test_the_last_model_call_decides_whether_a_turn_with_tools_was_cut(script, enqueued):
    run = run_with_tools()
    script(tool_call("lookup", '{"q": "cats"}'), [*text("Found"), Chunk(finish_reason="length")])

    loop.execute_run(run.pk)
    services.submit_tool_result(session=run.session, call_id=call_ids(run)[0], output={"n": 3})
    loop.execute_run(run.pk)

    run = reload(run)
    assert run.agent_message.status == Message.Status.INCOMPLETE
    (finish,) = published_data(run, "finish")
    assert finish["finishReason"] == "length"


def test_a_client_tool_call_pauses_the_run_without_a_lease_and_its_result_continues_it(script, enqueued):
    run = run_with_tools()
    provider = script(
        [*text("Let me look. "), *tool_call("lookup", '{"q": "cats"}')],
        text("Found 3 cats."),
    )

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.REQUIRES_ACTION
    assert (run.lease_owner, run.lease_expires_at) == ("", None)
    assert run.action_expires_at is not None
    assert published_types(run) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-available",
        "data-client-tool-call",
        "finish-step",
    ]
    (available,) = published_data(run, "tool-input-available")
    call_id = available["toolCallId"]
    assert call_id.startswith("call_")
    assert call_id != "prov-1"
    assert available["toolName"] == "lookup"
    assert available["input"] == {"q": "cats"}
    call = ToolCall.objects.get(call_id=call_id)
    assert (call.status, call.kind, call.input) == (ToolCall.Status.AWAITING_RESULT, "client", {"q": "cats"})
    (asked,) = published_data(run, "data-client-tool-call")
    assert asked["data"]["result_url"].endswith(f"/tool-calls/{call_id}/result")
    assert run.agent_message.text == "Let me look. "  # the transcript has the text so far
    assert sweep_runs()["requeued"] == 0  # a paused run is nobody's to re-queue
    assert reload(run).status == Run.Status.REQUIRES_ACTION

    services.submit_tool_result(session=run.session, call_id=call_id, output={"cats": 3})
    assert enqueued["continue_run"] == [run.pk]
    loop.execute_run(run.pk)  # what the runs.continue_run task does

    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "Let me look. Found 3 cats."
    assert published_types(run)[11:] == ["tool-output-available", *text_turn(deltas=1)[1:]]
    assert published_types(run).count("start") == 1
    second_call = provider.requests[1].messages
    assert second_call[-2]["tool_calls"][0]["id"] == "prov-1"
    assert second_call[-1] == {"role": "tool", "tool_call_id": "prov-1", "content": '{"cats": 3}'}


def test_a_result_is_taken_once(script, enqueued):
    run = run_with_tools()
    script(tool_call("lookup", "{}"))
    loop.execute_run(run.pk)
    (call_id,) = call_ids(run)

    services.submit_tool_result(session=run.session, call_id=call_id, error="no such page")

    with pytest.raises(ActionAlreadyAnswered):
        services.submit_tool_result(session=run.session, call_id=call_id, output="again")
    with pytest.raises(ToolCall.DoesNotExist):
        services.submit_tool_result(session=run.session, call_id="call_unknown", output="x")
    with pytest.raises(ToolCall.DoesNotExist):  # another session's call is no call of this one
        services.submit_tool_result(session=RunFactory().session, call_id=call_id, output="x")
    call = ToolCall.objects.get(call_id=call_id)
    assert (call.status, call.error) == (ToolCall.Status.FAILED, "no such page")


def test_a_tool_error_reaches_the_model_and_the_stream(script, enqueued):
    run = run_with_tools()
    provider = script(tool_call("lookup", "{}"), text("Sorry."))
    loop.execute_run(run.pk)
    (call_id,) = call_ids(run)

    services.submit_tool_result(session=run.session, call_id=call_id, error="no such page")
    loop.execute_run(run.pk)

    assert published_data(run, "tool-output-error") == [
        {"type": "tool-output-error", "toolCallId": call_id, "errorText": "no such page"}
    ]
    assert provider.requests[1].messages[-1]["content"] == '{"error": "no such page"}'
    assert reload(run).status == Run.Status.SUCCEEDED


def test_invalid_tool_arguments_are_an_error_the_model_sees_without_a_pause(script, enqueued):
    run = run_with_tools()
    provider = script(tool_call("lookup", "{not json"), text("Let me retry."))

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert "tool-input-error" in published_types(run)
    assert "tool-input-available" not in published_types(run)
    assert "not valid JSON" in provider.requests[1].messages[-1]["content"]


def test_a_turn_stops_at_its_step_limit(script, enqueued):
    run = run_with_tools()
    run.session.agent.max_steps = 2
    run.session.agent.save()
    script(tool_call("lookup", "[]"), tool_call("lookup", "[]"), text("never"))

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.FAILED
    assert run.error_code == "max_steps"
    assert published_types(run).count("start-step") == 2
    assert published_types(run)[-2:] == ["error", "finish"]


def test_stop_mid_stream_keeps_the_partial_text(script, enqueued):
    run = RunFactory()
    script([*text("one ", "two "), lambda: services.stop_session(session=run.session), *text("three")])

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.STOPPED
    assert run.agent_message.status == Message.Status.STOPPED
    assert run.agent_message.text.startswith("one two ")
    assert published_types(run)[-4:] == ["text-end", "abort", "finish-step", "finish"]


def test_a_run_past_its_time_limit_fails_keeping_its_text(script, enqueued, settings):
    settings.GENIE_RUN_TIMEOUT = 0
    run = RunFactory()
    script(text("late", " and later"))

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.FAILED
    assert run.error_code == "run_timeout"
    assert run.agent_message.text == "late"
    assert published_types(run)[-4:] == ["text-end", "error", "finish-step", "finish"]


def test_a_transient_error_before_any_output_is_retried_in_the_same_step(script, enqueued):
    run = RunFactory()
    flaky = ProviderError("provider_unreachable", "down", transient=True)
    provider = script([flaky], text("back"))

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "back"
    assert len(provider.requests) == 2
    assert published_types(run).count("start-step") == 1


def test_a_provider_failure_after_partial_text_fails_the_run_and_keeps_the_text(script, enqueued):
    run = RunFactory()
    script([*text("half a "), ProviderError("provider_bad_response", "The stream ended early.", transient=True)])

    loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.FAILED
    assert run.error_code == "provider_bad_response"
    assert run.agent_message.text == "half a "
    assert run.agent_message.status == Message.Status.FAILED
    assert published_data(run, "error") == [{"type": "error", "errorText": "The stream ended early."}]
    assert published_types(run)[-4:] == ["text-end", "error", "finish-step", "finish"]


def test_stop_while_paused_ends_the_run_stopped(script, enqueued):
    run = run_with_tools()
    script(tool_call("lookup", "{}"))
    loop.execute_run(run.pk)

    assert services.stop_session(session=run.session)

    run = reload(run)
    assert run.status == Run.Status.STOPPED
    assert run.action_expires_at is None
    assert published_types(run)[-2:] == ["abort", "finish"]
    assert ToolCall.objects.get(run=run).status == ToolCall.Status.EXPIRED
    assert loop.execute_run(run.pk) is None  # a late continuation does nothing


def test_a_run_re_queued_after_a_crash_sends_no_second_start(script, enqueued):
    run = RunFactory()
    claimed, writer = loop.claim_run(run.pk, worker_id="dead-worker")
    loop.Turn(run=claimed, writer=writer, worker_id="dead-worker").emit_start([])
    writer.close()
    claimed.mark_requeued()  # what the sweeper does when the lease expires before any text
    script(text("hi"))

    loop.execute_run(run.pk)

    assert published_types(run) == text_turn(deltas=1)
    assert reload(run).attempts == 2


def test_a_run_stopped_before_it_started_ends_with_start_abort_finish(script, enqueued):
    first = RunFactory()
    second = RunFactory(session=first.session)
    first.mark_started(lease_owner="busy-worker", lease_until=first.created_at.replace(year=2999))

    services.stop_session(session=first.session)
    assert reload(second).status == Run.Status.QUEUED  # its ids follow the running run's
    services.end_run(run=reload(first), status=Run.Status.STOPPED)  # the running run ends
    assert enqueued["execute_run"][-1] == second.pk
    loop.execute_run(second.pk)

    second = reload(second)
    assert second.status == Run.Status.STOPPED
    assert published_types(second) == ["start", "abort", "finish"]
    assert published_ids(second) == sorted(published_ids(second))


class HeldConnections:
    """A provider that notes, at each chunk it yields, whether the worker holds a
    database connection while it waits on the model."""

    supports_tools = False

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.held: list[bool] = []

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]:
        for piece in self.pieces:
            self.held.append(connection.connection is not None)
            yield Chunk(text=piece)


def test_a_streaming_turn_holds_no_database_connection_while_the_model_streams(enqueued):
    run = RunFactory()
    provider = HeldConnections(["one ", "two ", "three"])

    with mock.patch.object(loop, "get_provider", return_value=provider):
        loop.execute_run(run.pk)

    assert provider.held == [False, False, False]
    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert run.first_token_at is not None
    assert run.agent_message.text == "one two three"


def test_a_title_holds_no_database_connection_while_the_model_answers():
    from runs import titles

    run = RunFactory()
    provider = HeldConnections(["Cat ", "names"])

    with mock.patch.object(titles, "get_provider", return_value=provider):
        titles.generate_title(session_id=run.session_id)

    assert provider.held == [False, False]
    run.session.refresh_from_db()
    assert run.session.title == "Cat names"


class LostConnections:
    """A database that drops the connection under the worker's writes (a PostgreSQL
    restart): once ``arm``ed, the first ``times`` statements starting with each of
    ``prefixes`` fail as on a dropped connection."""

    def __init__(self, *prefixes: str, times: int) -> None:
        self.left = dict.fromkeys(prefixes, times)
        self.failed: list[str] = []
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    def __call__(self, execute, sql, params, many, context):
        prefix = next((p for p in self.left if sql.startswith(p)), None)
        if self.armed and prefix is not None and self.left[prefix] > 0:
            self.left[prefix] -= 1
            self.failed.append(prefix)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


def test_a_reply_goes_on_when_the_database_connection_is_lost_under_its_writes(script, enqueued, settings):
    """Every kind of write a streaming turn makes (its event batches, lease renewals, the
    first token's time, its checkpoint and its end) meets a lost connection twice: each is
    retried on a new connection and the reply completes, stored whole (issue 26: a
    PostgreSQL restart killed the reply in progress every time)."""
    settings.GENIE_RUN_LEASE = 0.0  # the lease is renewed at every token
    run = RunFactory()
    lost = LostConnections(
        'INSERT INTO "runs_runevent"',
        'UPDATE "runs_run" SET "lease_expires_at"',
        'UPDATE "runs_run" SET "first_token_at"',
        'UPDATE "runs_run" SET "state"',
        'UPDATE "chat_message"',  # inside the run's end: its whole transaction again
        times=2,
    )
    script([lost.arm, *text("one ", "two ", "three"), Chunk(finish_reason="stop")])  # armed once the run is claimed

    with connection.execute_wrapper(lost):
        loop.execute_run(run.pk)

    run = reload(run)
    assert set(lost.failed) == set(lost.left)  # every kind of write met the fault
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "one two three"
    assert stored_types(run) == published_types(run) == text_turn(deltas=3)
    assert published_ids(run) == sorted(set(published_ids(run)))


def test_a_claim_that_loses_its_database_connection_is_made_again(script, enqueued):
    """A task whose claim meets a lost connection (its transaction failed as a whole) claims
    again on a new one, instead of failing and leaving the run to the sweeper's grace."""
    run = RunFactory()
    script(text("claimed"))
    lost = LostConnections('UPDATE "runs_run" SET "status"', times=1)
    lost.arm()

    with connection.execute_wrapper(lost):
        loop.execute_run(run.pk)

    run = reload(run)
    assert lost.failed == ['UPDATE "runs_run" SET "status"']
    assert run.status == Run.Status.SUCCEEDED
    assert run.attempts == 1
    assert published_types(run) == text_turn(deltas=1)


def test_the_prompt_is_read_again_when_the_database_connection_is_lost(script, enqueued, monkeypatch):
    run = RunFactory()
    provider = script(text("read"))
    lost = LostConnections("SELECT", times=1)
    read_prompt = loop.turn_prompt_parts

    def read_with_a_lost_connection(run: Run) -> object:
        lost.arm()  # the prompt's first statement fails
        return read_prompt(run)

    monkeypatch.setattr(loop, "turn_prompt_parts", read_with_a_lost_connection)

    with connection.execute_wrapper(lost):
        loop.execute_run(run.pk)

    assert lost.failed == ["SELECT"]
    assert reload(run).status == Run.Status.SUCCEEDED
    assert provider.requests[0].messages[-1]["content"] == run.user_message.text


class EarlyProvider:
    """A remote-like provider whose calls may start in another thread (``starts_early``):
    notes the thread each chunk is read on, and whether a call was dropped unread."""

    supports_tools = False
    starts_early = True

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.requests: list[ProviderRequest] = []
        self.threads: list[int] = []
        self.dropped = threading.Event()

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        try:
            for piece in self.pieces:
                self.threads.append(threading.get_ident())
                yield Chunk(text=piece)
            yield Chunk(finish_reason="stop")
        except GeneratorExit:
            self.dropped.set()
            raise


def test_a_fresh_turns_model_call_starts_while_its_claim_is_recorded_and_answers_once(enqueued):
    run = RunFactory()
    provider = EarlyProvider(["one ", "two"])

    with mock.patch.object(loop, "get_provider", return_value=provider):
        loop.execute_run(run.pk)

    run = reload(run)
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "one two"
    assert len(provider.requests) == 1  # the early call was the step's call, not a second one
    assert provider.threads[0] != threading.get_ident()  # its first chunk read by the early thread
    assert published_types(run).count("start") == 1
    assert published_types(run)[:4] == ["start", "start-step", "text-start", "text-delta"]


def test_a_duplicate_delivery_is_refused_before_any_model_call(enqueued):
    run = RunFactory()
    run.mark_started(lease_owner="another-worker", lease_until=timezone.now() + timedelta(seconds=60))
    provider = EarlyProvider(["never"])

    with mock.patch.object(loop, "get_provider", return_value=provider):
        assert loop.execute_run(run.pk, worker_id="this-worker") is None

    assert provider.requests == []
    assert published_types(run) == []
    assert reload(run).lease_owner == "another-worker"


def test_a_claim_that_fails_after_the_call_started_drops_it_and_publishes_nothing(enqueued):
    run = RunFactory()
    provider = EarlyProvider(["never ", "published"])

    with (
        mock.patch.object(loop, "get_provider", return_value=provider),
        mock.patch.object(Run, "mark_started", side_effect=RuntimeError("the claim failed")),
        pytest.raises(RuntimeError),
    ):
        loop.execute_run(run.pk)

    assert provider.dropped.wait(10)  # closed by its thread once its first chunk came
    assert published_types(run) == []
    run = reload(run)
    assert run.status == Run.Status.QUEUED  # the claim rolled back: another delivery takes it
    assert run.agent_message.text == ""
