"""The sweeper on each kind of run it meets: leased, lease expired (with and without
text), paused, paused past its TTL, answered but not picked up, and queued too long."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from chat.models import Message
from runs import loop
from runs.events import RunEventWriter
from runs.models import Run, ToolCall
from runs.providers import Chunk
from runs.recovery import sweep_runs
from tests.factories import RunFactory
from tests.runs.conftest import published_types, stored_events, stored_types, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]

PAST = timedelta(minutes=-5)
FUTURE = timedelta(minutes=5)


def started(lease_in: timedelta, *, attempts: int = 1) -> Run:
    run = RunFactory()
    run.mark_started(lease_owner="worker-1", lease_until=timezone.now() + lease_in)
    Run.objects.filter(pk=run.pk).update(attempts=attempts)
    return run


def paused(expires_in: timedelta, *, answered: bool) -> Run:
    run = RunFactory()
    run.mark_waiting(state={"calls": ["call_1"]}, expires_at=timezone.now() + expires_in)
    call = ToolCall.objects.create(run=run, call_id=f"call_{run.pk}", tool_name="t", input={})
    if answered:
        call.mark_succeeded({"ok": True})
    else:
        call.mark_waiting(ToolCall.Status.PENDING_APPROVAL)
    return run


def test_a_run_with_a_live_lease_is_left_alone(enqueued):
    run = started(FUTURE)

    assert sweep_runs() == {"failed": 0, "requeued": 0, "expired": 0, "resumed": 0, "ended": 0}
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING


def test_an_expired_lease_before_any_text_re_queues_the_run(enqueued):
    run = started(PAST)

    assert sweep_runs()["requeued"] == 1

    run.refresh_from_db()
    assert (run.status, run.lease_owner) == (Run.Status.QUEUED, "")
    assert enqueued["execute_run"] == [run.pk]


def test_an_expired_lease_after_three_attempts_fails_the_run(enqueued):
    run = started(PAST, attempts=3)

    assert sweep_runs()["failed"] == 1

    run.refresh_from_db()
    assert (run.status, run.error_code) == (Run.Status.FAILED, "worker_lost")


def test_an_expired_lease_after_text_fails_the_run_keeping_the_text(enqueued):
    run = started(PAST)
    Run.objects.filter(pk=run.pk).update(first_token_at=timezone.now())
    writer = RunEventWriter.open(run)
    for type_, fields in [
        ("start", {"messageId": str(run.agent_message.uuid)}),
        ("start-step", {}),
        ("text-start", {"id": run.text_part_id}),
        ("text-delta", {"id": run.text_part_id, "delta": "partial"}),
    ]:
        writer.emit(type_, **fields)
    writer.close()

    assert sweep_runs()["failed"] == 1

    run.refresh_from_db()
    assert (run.status, run.error_code) == (Run.Status.FAILED, "worker_lost")
    message = Message.objects.get(pk=run.agent_message_id)
    assert (message.text, message.status) == ("partial", Message.Status.FAILED)
    assert published_types(run)[-4:] == ["text-end", "error", "finish-step", "finish"]
    assert enqueued["execute_run"] == []


def killed_before_its_flush(run: Run, events: list[tuple[str, dict]], settings) -> None:
    """A worker published ``events`` to Redis and died before its batch reached PostgreSQL."""
    settings.GENIE_EVENT_FLUSH_INTERVAL = 3600
    writer = RunEventWriter.open(run)
    for type_, fields in events:
        writer.emit(type_, **fields)
    writer.read_replies()  # in Redis; the batch for PostgreSQL dies with the worker
    assert stored_types(run) == []


def test_the_survivor_stores_the_dead_workers_last_batch(enqueued, settings):
    run = started(PAST)
    Run.objects.filter(pk=run.pk).update(first_token_at=timezone.now())
    part = run.text_part_id
    killed_before_its_flush(
        run,
        [
            ("start", {"messageId": str(run.agent_message.uuid)}),
            ("start-step", {}),
            ("text-start", {"id": part}),
            ("text-delta", {"id": part, "delta": "seen "}),
            ("text-delta", {"id": part, "delta": "by clients"}),
        ],
        settings,
    )

    assert sweep_runs()["failed"] == 1

    # PostgreSQL alone (a replay once the Redis Stream expired) holds what clients saw, then the end.
    stored = stored_events(run)
    assert [type_ for type_, _ in stored] == [
        "start", "start-step", "text-start", "text-delta", "text-delta", "text-end", "error", "finish-step", "finish"
    ]  # fmt: skip
    assert "".join(data.get("delta", "") for _, data in stored) == "seen by clients"
    assert published_types(run) == [type_ for type_, _ in stored]


def test_a_re_queued_run_keeps_its_start_in_the_stored_log(enqueued, settings):
    run = started(PAST)
    killed_before_its_flush(run, [("start", {"messageId": str(run.agent_message.uuid)}), ("start-step", {})], settings)

    assert sweep_runs()["requeued"] == 1

    assert stored_types(run) == ["start", "start-step"]  # the next attempt sends no second start


def test_a_paused_run_is_never_re_queued(enqueued):
    run = paused(FUTURE, answered=False)

    assert sweep_runs() == {"failed": 0, "requeued": 0, "expired": 0, "resumed": 0, "ended": 0}

    run.refresh_from_db()
    assert run.status == Run.Status.REQUIRES_ACTION
    assert enqueued["execute_run"] == enqueued["continue_run"] == []


def test_a_paused_run_unanswered_past_its_ttl_fails_action_expired(enqueued):
    run = paused(PAST, answered=False)

    assert sweep_runs()["expired"] == 1

    run.refresh_from_db()
    assert (run.status, run.error_code) == (Run.Status.FAILED, "action_expired")
    assert published_types(run) == ["start", "error", "finish"]
    assert ToolCall.objects.get(run=run).status == ToolCall.Status.EXPIRED


def test_an_answered_pause_whose_task_was_lost_is_continued(enqueued, settings):
    settings.GENIE_QUEUED_RUN_GRACE = 0
    run = paused(FUTURE, answered=True)

    assert sweep_runs()["resumed"] == 1

    assert enqueued["continue_run"] == [run.pk]


def test_a_run_queued_too_long_is_enqueued_again(enqueued, settings):
    settings.GENIE_QUEUED_RUN_GRACE = 0
    run = RunFactory()

    assert sweep_runs()["requeued"] == 1

    assert enqueued["execute_run"] == [run.pk]


class WorkerKilled(BaseException):
    """The worker process dies here (kill -9): nothing after this point runs."""


def test_a_worker_killed_while_ending_a_finished_reply_leaves_it_succeeded(script, enqueued, monkeypatch):
    run = RunFactory()
    script([*text("Hello ", "world."), Chunk(finish_reason="stop")])
    monkeypatch.setattr(loop, "finish_run", mock.Mock(side_effect=WorkerKilled))  # dies in the end's transaction
    with pytest.raises(WorkerKilled):
        loop.execute_run(run.pk)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() + PAST)

    assert sweep_runs()["ended"] == 1

    run.refresh_from_db()
    assert (run.status, run.error_code) == (Run.Status.SUCCEEDED, "")
    message = Message.objects.get(pk=run.agent_message_id)
    assert (message.text, message.status) == ("Hello world.", Message.Status.COMPLETE)
    assert stored_types(run)[-3:] == ["text-end", "finish-step", "finish"]
    assert stored_events(run)[-1][1]["finishReason"] == "stop"
    assert published_types(run) == stored_types(run)  # live streams get the finish too
    assert enqueued["execute_run"] == []  # the model is not asked again


def test_the_survivor_sends_what_clients_had_not_seen_of_a_finished_reply(enqueued, settings):
    run = started(PAST)
    Run.objects.filter(pk=run.pk).update(
        first_token_at=timezone.now(),
        state={
            "text": "Hello",
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            "outcome": {"status": "succeeded", "error_code": "", "error_message": "", "finish_reason": "stop"},
        },
    )
    part = run.text_part_id
    writer = RunEventWriter.open(run)
    for type_, fields in [
        ("start", {"messageId": str(run.agent_message.uuid)}),
        ("start-step", {}),
        ("text-start", {"id": part}),
        ("text-delta", {"id": part, "delta": "Hel"}),  # "lo" died with the worker
    ]:
        writer.emit(type_, **fields)
    writer.close()

    assert sweep_runs()["ended"] == 1

    stored = stored_events(run)
    assert [type_ for type_, _ in stored][-5:] == ["text-delta", "text-delta", "text-end", "finish-step", "finish"]
    assert "".join(data.get("delta", "") for _, data in stored) == "Hello"
    message = Message.objects.get(pk=run.agent_message_id)
    assert (message.text, message.status, message.completion_tokens) == ("Hello", Message.Status.COMPLETE, 2)
