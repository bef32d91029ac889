"""A worker killed with kill -9 mid-turn: the sweeper (driven by a real beat process) ends
the run within a bounded time, the waiting stream ends, the partial text is kept."""

from __future__ import annotations

import os
import signal

import pytest

from chat.models import Message
from runs.models import Run
from tests.live import StreamRead
from tests.processes import start_worker

pytestmark = pytest.mark.live


def kill_its_worker_and_resume(live, created, head, celery_worker, live_env, tmp_path) -> StreamRead:
    """``kill -9`` the worker holding the run, with a second worker alive to run the sweeps
    and the re-queued run; read the rest of the stream from the last id seen."""
    run = Run.objects.get(uuid=created["run_uuid"])
    pid = int(run.lease_owner.split(":")[1])
    assert pid == celery_worker.proc.pid
    survivor = start_worker(live_env, tmp_path / "survivor.log", concurrency=2)
    try:
        os.kill(pid, signal.SIGKILL)
        celery_worker.proc.wait(10)
        return live.read_stream(created["stream_url"], last_event_id=head.ids[-1], timeout=30)
    finally:
        survivor.stop()
        celery_worker.restart("ready")


def test_killed_worker_run_is_failed_by_the_sweeper_and_the_stream_ends(live, celery_worker, live_env, tmp_path):
    live.script([("delay", 0.2), ("text", "partial "), ("text", "text "), *[("delay", 0.2), ("text", "x")] * 200])
    created = live.start_session()
    head = live.read_stream(created["stream_url"], max_events=5)  # start, start-step, text-start, 2 deltas
    tail = kill_its_worker_and_resume(live, created, head, celery_worker, live_env, tmp_path)

    assert tail.types[-3:] == ["error", "finish-step", "finish"]
    run = live.wait_run(created["run_uuid"])
    assert run.status == Run.Status.FAILED
    assert run.error_code == "worker_lost"
    assert run.agent_message.status == Message.Status.FAILED
    assert run.agent_message.text.startswith("partial text ")
    assert run.agent_message.text == head.text + tail.text


def test_a_run_re_queued_after_a_crash_before_its_first_token_starts_once(live, celery_worker, live_env, tmp_path):
    # Keep-alives, not silence: a silent model times out (GENIE_PROVIDER_TIMEOUT is 2 s in
    # the tests) and the worker's own retry would get the second reply before the kill
    # when starting the survivor takes longer than that.
    live.script([("quiet", 30.0), ("text", "never")], [("text", "second try")])
    created = live.start_session()
    head = live.read_stream(created["stream_url"], max_events=2)  # start, start-step; the model is thinking
    tail = kill_its_worker_and_resume(live, created, head, celery_worker, live_env, tmp_path)

    types = head.types + tail.types
    assert types.count("start") == 1
    assert types[-1] == "finish"
    assert tail.text == "second try"
    run = live.wait_run(created["run_uuid"])
    assert run.status == Run.Status.SUCCEEDED
    assert run.attempts == 2
    assert run.agent_message.text == "second try"


def test_redelivered_task_while_the_lease_is_held_does_nothing(live):
    from runs.loop import execute_run

    live.script([("delay", 0.2), ("text", "once"), ("delay", 1.0)])
    created = live.start_session()
    live.read_stream(created["stream_url"], max_events=3)
    run = Run.objects.get(uuid=created["run_uuid"])

    assert execute_run(run.pk, worker_id="another-worker") is None  # a duplicate delivery
    finished = live.wait_run(created["run_uuid"])
    assert finished.status == Run.Status.SUCCEEDED
    assert finished.attempts == 1
    assert Message.objects.filter(session=run.session, sender_role="agent").count() == 1
    assert finished.events.filter(type="finish").count() == 1
