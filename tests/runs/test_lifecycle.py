"""The run lifecycle: one-row transitions on ``Run`` and the one service that ends a run
(``end_run``), with the events each end writes and what follows on commit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Message
from genie.connections import redis_client
from runs import services
from runs.events import RunEventWriter, stop_key
from runs.models import Run, RunEvent, ToolCall
from tests.factories import RunFactory
from tests.runs.conftest import published_data, published_types, stored_types

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]


def leased(run: Run, owner: str = "worker-1") -> Run:
    run.mark_started(lease_owner=owner, lease_until=timezone.now() + timedelta(minutes=5))
    return run


def test_transitions_of_one_row():
    run = RunFactory()
    leased(run)
    assert (run.status, run.attempts, run.lease_owner) == (Run.Status.RUNNING, 1, "worker-1")

    run.mark_waiting(state={"calls": ["call_1"]}, expires_at=timezone.now())
    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_expires_at) == (Run.Status.REQUIRES_ACTION, "", None)
    call = ToolCall.objects.create(run=run, call_id="call_1", tool_name="lookup")
    call.mark_waiting(ToolCall.Status.AWAITING_RESULT)
    assert not Run.objects.ready_to_continue().filter(pk=run.pk).exists()

    call.mark_succeeded({"answer": 1})
    assert Run.objects.ready_to_continue().filter(pk=run.pk).exists()
    assert call.claim_execution() is True
    assert call.claim_execution() is False  # once, ever

    assert run.mark_stop_requested() is True
    assert run.mark_stop_requested() is False
    with pytest.raises(ValueError, match="not a final status"):
        run.mark_finished(status=Run.Status.RUNNING)


@pytest.mark.parametrize(
    ("status", "message_status", "closing"),
    [
        (Run.Status.SUCCEEDED, Message.Status.COMPLETE, ["finish"]),
        (Run.Status.FAILED, Message.Status.FAILED, ["error", "finish"]),
        (Run.Status.STOPPED, Message.Status.STOPPED, ["abort", "finish"]),
    ],
)
def test_finish_run_by_its_worker_writes_the_closing_events_then_the_final_state(
    enqueued, status, message_status, closing
):
    run = leased(RunFactory())
    writer = RunEventWriter.open(run)
    writer.emit("start", messageId=str(run.agent_message.uuid))

    ended = services.finish_run(
        run=run,
        writer=writer,
        worker_id="worker-1",
        status=status,
        error_message="It broke." if status == Run.Status.FAILED else "",
        text="the reply",
        usage=services.Usage(prompt_tokens=3, completion_tokens=4),
    )
    writer.close()

    assert ended is True
    run.refresh_from_db()
    assert run.status == status
    assert run.finished_at is not None
    assert (run.lease_owner, run.lease_expires_at) == ("", None)
    assert (run.prompt_tokens, run.completion_tokens) == (3, 4)
    message = Message.objects.get(pk=run.agent_message_id)
    assert (message.text, message.status) == ("the reply", message_status)
    assert published_types(run) == ["start", *closing]
    assert stored_types(run) == ["start", *closing]


@pytest.mark.parametrize(
    ("status", "error_code", "error_message", "kept"),
    [
        (Run.Status.SUCCEEDED, "", "", None),
        (
            Run.Status.FAILED,
            "provider_error",
            "The model is unreachable.",
            {"code": "provider_error", "message": "The model is unreachable."},
        ),
        (Run.Status.FAILED, "", "", {"code": "failed", "message": "The reply failed."}),
        (Run.Status.STOPPED, "", "", {"code": "stopped", "message": "The reply was stopped before it was complete."}),
    ],
)
def test_a_failed_or_stopped_reply_keeps_its_error_on_the_message(enqueued, status, error_code, error_message, kept):
    run = RunFactory()

    services.end_run(run=run, status=status, error_code=error_code, error_message=error_message)

    assert Message.objects.get(pk=run.agent_message_id).error == kept


def test_end_run_without_a_writer_reads_what_is_open_and_the_text_from_the_log(enqueued, settings):
    """A sweeper or a stop ends a run its worker left: the text is what clients saw,
    including the deltas only Redis had (the worker died before its next batch)."""
    run = leased(RunFactory())
    writer = RunEventWriter.open(run)
    writer.emit("start", messageId=str(run.agent_message.uuid))
    writer.emit("start-step")
    writer.emit("text-start", id=run.text_part_id)
    writer.emit("text-delta", id=run.text_part_id, delta="stored ")
    settings.GENIE_EVENT_FLUSH_INTERVAL = 3600  # the next deltas reach Redis only
    writer.emit("text-delta", id=run.text_part_id, delta="and only ")
    writer.emit("text-delta", id=run.text_part_id, delta="in Redis")
    writer.close()  # the worker dies here, its batch unflushed
    assert RunEvent.objects.filter(run=run, type="text-delta").count() == 1

    services.end_run(run=run, status=Run.Status.FAILED, error_code="worker_lost", error_message="lost")

    run.refresh_from_db()
    assert Message.objects.get(pk=run.agent_message_id).text == "stored and only in Redis"
    assert published_types(run)[-4:] == ["text-end", "error", "finish-step", "finish"]
    assert run.error_code == "worker_lost"


def test_end_run_ends_a_run_once(enqueued):
    run = RunFactory()

    assert services.end_run(run=run, status=Run.Status.STOPPED) is True
    assert services.end_run(run=run, status=Run.Status.FAILED, error_message="late") is False

    run.refresh_from_db()
    assert run.status == Run.Status.STOPPED
    assert published_types(run) == ["start", "abort", "finish"]


def test_a_worker_that_lost_its_lease_cannot_end_the_run(enqueued):
    run = leased(RunFactory(), owner="new-worker")
    writer = RunEventWriter.open(run)

    ended = services.finish_run(
        run=run, writer=writer, worker_id="old-worker", status=Run.Status.SUCCEEDED, text="stale"
    )
    writer.close()

    assert ended is False
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING
    assert published_types(run) == []


def test_after_commit_the_next_run_is_enqueued_the_title_written_and_the_stop_flag_cleared(enqueued):
    run = leased(RunFactory())
    queued = RunFactory(session=run.session)
    redis_client().set(stop_key(str(run.uuid)), 1)
    writer = RunEventWriter.open(run)

    services.finish_run(run=run, writer=writer, worker_id="worker-1", status=Run.Status.SUCCEEDED, text="done")
    writer.close()

    assert enqueued["execute_run"][-1] == queued.pk
    assert enqueued["generate_title"] == [run.session_id]
    assert not redis_client().exists(stop_key(str(run.uuid)))


def test_a_failed_run_gets_no_title(enqueued):
    run = RunFactory()

    services.end_run(run=run, status=Run.Status.FAILED, error_message="no")

    assert enqueued["generate_title"] == []
    assert published_data(run, "error") == [{"type": "error", "errorText": "no"}]


def test_stop_ends_unstarted_runs_and_flags_the_running_one(enqueued):
    running = leased(RunFactory())
    queued = RunFactory(session=running.session)

    assert services.stop_session(session=running.session)

    running.refresh_from_db()
    queued.refresh_from_db()
    assert running.status == Run.Status.RUNNING
    assert running.stop_requested_at is not None
    assert redis_client().exists(stop_key(str(running.uuid)))
    assert queued.status == Run.Status.QUEUED
    assert queued.stop_requested_at is not None
    assert services.stop_session(session=RunFactory().session)  # a lone queued run ends at once


def test_an_agent_with_generate_titles_off_gets_no_title_call(enqueued):
    run = leased(RunFactory())
    run.session.agent.generate_titles = False
    run.session.agent.save(update_fields=["generate_titles"])
    writer = RunEventWriter.open(run)

    services.finish_run(run=run, writer=writer, worker_id="worker-1", status=Run.Status.SUCCEEDED, text="done")
    writer.close()

    assert enqueued["generate_title"] == []
    run.session.refresh_from_db()
    assert run.session.title == ""


def test_titles_go_to_their_own_queue_which_workers_read_after_the_turns():
    from django.conf import settings

    from genie import celery_app

    route = celery_app.amqp.router.route({}, "runs.generate_title")
    assert route["queue"].name == settings.GENIE_TITLES_QUEUE
    assert celery_app.amqp.router.route({}, "runs.execute_run")["queue"].name == settings.CELERY_TASK_DEFAULT_QUEUE
    # A worker started without -Q reads every declared queue, in this order (the broker's
    # "priority" strategy keeps it): turns first.
    assert list(celery_app.amqp.queues) == [settings.CELERY_TASK_DEFAULT_QUEUE, settings.GENIE_TITLES_QUEUE]
    assert celery_app.conf.broker_transport_options["queue_order_strategy"] == "priority"
