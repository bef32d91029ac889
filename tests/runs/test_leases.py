"""A worker process renews its runs' leases from one thread (``runs.leases``), whatever its
turns are doing; a turn whose lease was taken by another worker stops without writing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs import loop
from runs.leases import LeaseKeeper, LeaseLost, keeper
from runs.loop import StopWatch
from runs.models import Run
from tests.factories import RunFactory
from tests.runs.conftest import published_types, stored_types, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_settings")]


def running_run(owner: str, *, expires_in: float = 1.0) -> Run:
    run = RunFactory()
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.RUNNING, lease_owner=owner, lease_expires_at=timezone.now() + timedelta(seconds=expires_in)
    )
    run.refresh_from_db()
    return run


def test_the_keeper_renews_every_lease_its_process_holds_in_one_statement(settings, django_assert_num_queries):
    settings.GENIE_RUN_LEASE = 30
    first, second = running_run("host:1:10"), running_run("host:1:11")
    held = LeaseKeeper()
    held.hold(first.pk, "host:1:10")
    held.hold(second.pk, "host:1:11")

    with django_assert_num_queries(1):
        assert held.renew() == 2

    for run in (first, second):
        run.refresh_from_db()
        assert run.lease_expires_at > timezone.now() + timedelta(seconds=25)
    assert not held.lost(first.pk)
    assert not held.lost(second.pk)


def test_a_lease_another_worker_took_is_noted_lost_and_not_renewed(settings):
    settings.GENIE_RUN_LEASE = 30
    run = running_run("host:1:10", expires_in=-1)
    Run.objects.filter(pk=run.pk).update(lease_owner="other:2:20")  # the sweeper re-queued it; another claimed it
    held = LeaseKeeper()
    held.hold(run.pk, "host:1:10")

    assert held.renew() == 0

    assert held.lost(run.pk)
    run.refresh_from_db()
    assert run.lease_expires_at < timezone.now()  # the other worker's lease is left alone
    held.release(run.pk)
    assert not held.lost(run.pk)


def test_the_keeper_thread_renews_while_the_turn_is_silent(settings):
    settings.GENIE_RUN_LEASE = 0.3  # a tick every 0.1 s
    run = running_run("host:1:10", expires_in=0.3)
    held = LeaseKeeper()
    held.hold(run.pk, "host:1:10")
    held.start()
    try:
        deadline = timezone.now() + timedelta(seconds=10)
        while timezone.now() < deadline:
            run.refresh_from_db()
            if run.lease_expires_at > timezone.now() + timedelta(seconds=0.25):
                break
    finally:
        held.stop()
    assert not held.running
    assert run.lease_expires_at > timezone.now()  # renewed past its first expiry, by the thread


def test_a_turn_whose_renewal_finds_the_lease_taken_raises_lease_lost(settings):
    run = running_run("host:1:10")
    Run.objects.filter(pk=run.pk).update(lease_owner="other:2:20")
    watch = StopWatch(run, "host:1:10", writer=None)
    watch._next_poll = float("inf")  # the stop flag is not what is asked here
    watch._next_renew = 0.0

    with pytest.raises(LeaseLost):
        watch.should_stop()


def test_a_turn_that_lost_its_lease_stops_without_another_event_or_its_end(script, enqueued):
    run = RunFactory()

    def taken_over() -> None:
        # The sweeper re-queued the run and another worker claimed it; this process's
        # keeper noticed at its tick.
        Run.objects.filter(pk=run.pk).update(lease_owner="other:2:20")
        keeper.renew()

    script([*text("Hello"), taken_over, *text(" twice", " over")])

    loop.execute_run(run.pk, worker_id="host:1:10")

    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING
    assert run.lease_owner == "other:2:20"
    assert published_types(run) == ["start", "start-step", "text-start", "text-delta"]
    assert "finish" not in stored_types(run)
    assert not keeper.lost(run.pk)  # released with the turn
