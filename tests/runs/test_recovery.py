"""A task delivered twice while its run's lease is held does nothing. (Workers killed with
kill -9 at each stage of a turn: tests/runs/test_faults_live.py.)"""

from __future__ import annotations

import pytest

from chat.models import Message
from runs.models import Run

pytestmark = pytest.mark.live


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

