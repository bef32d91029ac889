"""The event log's PostgreSQL side: batches with merged deltas, exact partial replay."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.db import transaction
from django.db.models import Max

from chat.models import Session
from chat.services import start_session
from genie.auth import caller_for_user
from runs import tasks
from runs.events import RunEventWriter, StreamEvent
from runs.models import Run, RunEvent
from runs.sse import backlog_from_start, events_before
from tests.factories import RunFactory


@pytest.fixture
def run(db, member, agent):
    with mock.patch.object(tasks.execute_run, "delay"):
        _, run, _ = start_session(caller=caller_for_user(member.user), agent=agent, text="hi")
    return run


def write_turn(run, deltas: list[str]) -> RunEventWriter:
    writer = RunEventWriter.open(run)
    writer.record("start", messageId="m")
    writer.record("text-start", id="t")
    for delta in deltas:
        writer.record("text-delta", id="t", delta=delta)
    writer.record("text-end", id="t")
    writer.record("finish")
    writer.flush()
    return writer


@pytest.mark.parametrize("tokens", [3, 300])
def test_a_batch_stores_the_same_rows_however_many_tokens(run, tokens):
    write_turn(run, [f"w{i} " for i in range(tokens)])

    rows = list(RunEvent.objects.filter(run=run).order_by("seq"))

    assert [(r.first_seq, r.seq, r.type) for r in rows] == [
        (1, 1, "start"),
        (2, 2, "text-start"),
        (3, 2 + tokens, "text-delta"),
        (3 + tokens, 3 + tokens, "text-end"),
        (4 + tokens, 4 + tokens, "finish"),
    ]
    assert rows[2].data == {"type": "text-delta", "id": "t", "delta": "".join(f"w{i} " for i in range(tokens))}


def test_deltas_of_separate_batches_stay_separate_rows(run):
    writer = RunEventWriter.open(run)
    writer.record("text-start", id="t")
    writer.record("text-delta", id="t", delta="a")
    writer.flush()
    writer.record("text-delta", id="t", delta="b")
    writer.record("text-delta", id="t", delta="c")
    writer.flush()

    rows = RunEvent.objects.filter(run=run, type="text-delta").order_by("seq")

    assert [(r.first_seq, r.seq, r.data["delta"]) for r in rows] == [(2, 2, "a"), (3, 4, "bc")]


def test_a_reader_inside_a_merged_delta_gets_exactly_the_rest(run):
    write_turn(run, ["Miso", ", ", "Juniper", "."])  # ids 3..6
    merged = RunEvent.objects.get(run=run, type="text-delta")

    assert merged.data_after(2)["delta"] == "Miso, Juniper."
    assert merged.data_after(4)["delta"] == "Juniper."
    assert merged.data_after(5)["delta"] == "."
    event = StreamEvent.from_row(merged, str(run.uuid), after=4)
    assert event.seq == 6
    assert json.loads(event.data_json) == {"type": "text-delta", "id": "t", "delta": "Juniper."}


def test_the_next_turn_continues_after_the_last_merged_id(run):
    write_turn(run, ["a", "b", "c"])

    assert RunEventWriter.open(run).next_seq == 8


def stored(run, *types: str) -> None:
    last = RunEvent.objects.filter(session=run.session).order_by("-seq").values_list("seq", flat=True).first() or 0
    for seq, type_ in enumerate(types, last + 1):
        RunEvent.objects.create(session=run.session, run=run, first_seq=seq, seq=seq, type=type_, data={"type": type_})


@pytest.mark.parametrize(
    ("before", "own", "after"),
    [
        pytest.param((), (), (), id="nothing-stored"),
        pytest.param(("start", "finish"), (), (), id="only-an-earlier-run"),
        pytest.param((), ("start",), (), id="only-its-own"),
        pytest.param(("start", "finish"), ("start", "finish"), ("start",), id="between-two-runs"),
        pytest.param((), (), ("start",), id="only-a-later-run"),
    ],
)
def test_a_runs_backlog_from_its_start_starts_where_events_before_says(run, before, own, after):
    earlier = RunFactory(session=run.session)
    later = RunFactory(session=run.session)
    stored(earlier, *before)
    stored(run, *own)
    stored(later, *after)

    start, rows = backlog_from_start(run)

    assert start == events_before(run)
    expected = RunEvent.objects.filter(session=run.session, seq__gt=start).order_by("seq") if own else []
    assert [(row.seq, str(row.run_uuid)) for row in rows] == [(row.seq, str(row.run.uuid)) for row in expected]


@pytest.mark.parametrize(
    "statuses",
    [
        pytest.param(("succeeded",), id="none-active"),
        pytest.param(("succeeded", "running"), id="the-latest-active"),
        pytest.param(("succeeded", "running", "queued", "queued"), id="turns-queued-behind"),
        pytest.param(("requires_action", "succeeded", "failed"), id="an-earlier-run-paused"),
    ],
)
def test_a_session_stream_spans_its_first_active_run_to_its_latest(run, statuses):
    runs = [run, *(RunFactory(session=run.session) for _ in statuses[1:])]
    for each, status in zip(runs, statuses, strict=True):
        Run.objects.filter(pk=each.pk).update(status=status)
        stored(each, "start", "finish")

    span = Run.objects.stream_span(session_id=run.session_id)

    active = Run.objects.filter(session=run.session).active().order_by("created_at", "id").first()
    if active is None:
        assert span is None
        return
    earlier = RunEvent.objects.filter(session=run.session, run__created_at__lt=active.created_at)
    latest = Run.objects.filter(session=run.session).order_by("-created_at", "-id").first()
    assert (span[0].pk, span[0].seq_before, span[1].pk) == (active.pk, earlier.aggregate(m=Max("seq"))["m"], latest.pk)


@pytest.mark.parametrize(
    ("statuses", "earlier_active"),
    [
        pytest.param(("running",), False, id="alone"),
        pytest.param(("succeeded", "queued"), False, id="after-an-ended-turn"),
        pytest.param(("running", "queued"), True, id="behind-a-running-turn"),
        pytest.param(("requires_action", "queued"), True, id="behind-a-paused-turn"),
    ],
)
def test_a_claim_reads_what_it_needs_under_the_session_lock(run, statuses, earlier_active):
    """``lock_session_of`` (the claim's one query) against the querysets it stands for."""
    runs = [run, *(RunFactory(session=run.session) for _ in statuses[1:])]
    for each, status in zip(runs, statuses, strict=True):
        Run.objects.filter(pk=each.pk).update(status=status)
    stored(runs[0], "start", "text-start")
    claimed = Run.objects.get(pk=runs[-1].pk)

    with transaction.atomic():
        lock = Run.objects.lock_session_of(claimed)

    assert lock.earlier_active is earlier_active
    assert lock.earlier_active == (
        Run.objects.active().filter(session=run.session, created_at__lt=claimed.created_at).exists()
    )
    assert lock.stored_seq == RunEvent.objects.filter(session=run.session).aggregate(m=Max("seq"))["m"]
    Session.objects.filter(pk=run.session_id).delete()
    assert Run.objects.lock_session_of(claimed) is None
