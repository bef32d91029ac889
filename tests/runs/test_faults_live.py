"""Faults with real processes, each turn seen every way a client or an operator sees it.

One stack for the module, all its own: a redis-server it can restart, Daphne, two Celery
workers (the one holding the run is killed, the other survives it; a replacement starts
at once), beat for the sweeper, the scripted model. Each stage injects one fault into a
turn (``kill -9`` of its worker before the first token, mid-reply, during a tool call,
while ending the run; a Redis restart; the worker's PostgreSQL connections terminated),
then compares:

- live: a client reading the session stream through the fault (resuming with
  ``Last-Event-ID`` whenever its stream ends before ``finish``, as after a Redis restart);
- resumed: a client that left after the first events and comes back with ``Last-Event-ID``;
- replayed: the session stream from ``Last-Event-ID: 0``, out of Redis, and again once the
  Redis Stream has expired (out of PostgreSQL alone);
- stored: the run's event rows and the transcript's message, and the run's status.

Every view holds the same text, exactly one ``start`` and one ``finish``, the run's real
outcome (an ``error`` only when it failed), the same events in the same order, and no
event twice.

Redis down for longer (the last tests): writes that need Redis answer 503 and store
nothing; open streams end cleanly; stored events stay readable from PostgreSQL; after the
restart everything works without restarting any process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.db import connection, transaction

from chat.models import Message, Session
from runs.events import stream_key
from runs.models import Run, RunEvent, ToolCall
from tests.factories import RunFactory
from tests.live import LiveStack, SSEEvent, StreamRead
from tests.processes import LiveProcess, RedisServer, start_beat, start_daphne, start_worker, wait_for, worker_ready

pytestmark = pytest.mark.live

WORKER_APP = "genie-faults-worker"  # the workers' application_name in pg_stat_activity (libpq reads PGAPPNAME)


@dataclass
class FaultStack:
    redis: RedisServer
    url: str
    env: dict[str, str]
    folder: Path
    beat: LiveProcess
    processes: list[LiveProcess] = field(default_factory=list)
    workers: list[LiveProcess] = field(default_factory=list)

    def add_worker(self, *, wait: bool) -> None:
        log = self.folder / f"worker{len(list(self.folder.glob('worker*.log')))}.log"
        self.workers.append(start_worker({**self.env, "PGAPPNAME": WORKER_APP}, log, concurrency=4, wait=wait))

    def ready(self) -> None:
        """Two workers up (a replacement for the last one killed may still be starting)."""
        wait_for(lambda: all(worker_ready(worker) for worker in self.workers), 60, "the workers")

    def kill_run_holder(self, run_uuid: str) -> None:
        """``kill -9`` of the worker holding the run's lease; its replacement starts now."""
        pid = int(Run.objects.get(uuid=run_uuid).lease_owner.split(":")[1])
        (worker,) = [w for w in self.workers if w.proc.pid == pid]
        os.kill(pid, signal.SIGKILL)
        worker.proc.wait(10)
        worker.stop()
        self.workers.remove(worker)
        self.add_worker(wait=False)

    def stream_expired(self, session_uuid: str) -> None:
        redis.Redis.from_url(self.redis.url).delete(stream_key(session_uuid))

    def stop(self) -> None:
        """Killed, not stopped: nothing here needs a graceful end (a worker's warm shutdown
        and Daphne's wait for its connections took 10 s each)."""
        for process in [*self.workers, *self.processes]:
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait()
            process.log.close()
        self.redis.stop()


@pytest.fixture(scope="module")
def fault_stack(live_env, celery_beat, tmp_path_factory) -> Iterator[FaultStack]:
    """The module's own stack. The session's beat sweeps the same database with its own
    Redis: it would take this stack's orphaned runs over through the wrong Redis (their
    unflushed events unseen, their retry queued where no worker of this stack listens),
    so it pauses while this module runs."""
    folder = tmp_path_factory.mktemp("faults")
    celery_beat.stop()
    server = RedisServer(folder)
    server.start()
    # Production's batch interval: a dead worker's last second of events is in Redis only.
    env = {**live_env, "REDIS_URL": server.url, "GENIE_EVENT_FLUSH_INTERVAL": "1.0"}
    daphne, url = start_daphne(env, folder / "daphne.log")
    beat = start_beat(env, folder)
    stack = FaultStack(redis=server, url=url, env=env, folder=folder, beat=beat, processes=[daphne, beat])
    stack.add_worker(wait=False)
    stack.add_worker(wait=False)
    stack.ready()
    yield stack
    stack.stop()
    celery_beat.start()


# --- the views -------------------------------------------------------------------------


def shape(read: StreamRead) -> list[str]:
    """The event types in order, a run of text deltas as one (PostgreSQL stores a batch's
    deltas merged: a replay from it has fewer, longer ones)."""
    types: list[str] = []
    for type_ in read.types:
        if not (type_ == "text-delta" and types and types[-1] == "text-delta"):
            types.append(type_)
    return types


def stored_view(run_uuid: str) -> StreamRead:
    rows = RunEvent.objects.filter(run__uuid=run_uuid).order_by("seq")
    return StreamRead(
        status=200, headers=httpx.Headers(), events=[SSEEvent(row.seq, {**row.data, "type": row.type}) for row in rows]
    )


def assert_views_agree(views: dict[str, StreamRead], *, status: str, transcript: dict[str, Any]) -> None:
    for name, read in views.items():
        assert read.types.count("start") == 1, (name, read.types)
        assert read.types.count("finish") == 1, (name, read.types)
        assert read.types[-1] == "finish", (name, read.types)
        assert ("error" in read.types) == (status == Run.Status.FAILED), (name, read.types)
        assert read.ids == sorted(set(read.ids)), (name, read.ids)  # in order, none twice
    texts = {name: read.text for name, read in views.items()}
    assert set(texts.values()) == {transcript["text"]}, texts
    shapes = {name: shape(read) for name, read in views.items()}
    assert all(s == shapes["stored"] for s in shapes.values()), shapes


# --- the stages ------------------------------------------------------------------------


@dataclass
class Turn:
    """A stage's turn as it goes: the stack, the client and what the session answered."""

    stack: FaultStack
    live: LiveStack
    created: dict[str, Any]
    receiver: Any

    @property
    def run(self) -> Run:
        return Run.objects.get(uuid=self.created["run_uuid"])


def kill(turn: Turn) -> None:
    turn.stack.kill_run_holder(turn.created["run_uuid"])


def kill_once_the_model_is_asked(turn: Turn) -> None:
    model = turn.live.agent.model
    wait_for(lambda: len(turn.live.fake_llm.requests[model]) == 1, 20, "the model call")
    kill(turn)


def kill_during_the_call(turn: Turn) -> None:
    assert turn.receiver.arrived.wait(20)
    kill(turn)
    turn.receiver.hold.set()  # the receiver answers a caller that is gone


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND wait_event_type = 'Lock'",
            [WORKER_APP],
        )
        return cursor.fetchone()[0] > 0


def kill_while_ending(turn: Turn) -> None:
    """Hold the agent message's row so the worker, ending the finished reply, waits inside
    its last transaction (its outcome noted); kill it there, then let go."""
    with transaction.atomic():
        Message.objects.select_for_update().get(pk=turn.run.agent_message_id)
        wait_for(lambda: "outcome" in turn.run.state and waiting_on_a_lock(), 20, "the worker ending the run")
        kill(turn)


def restart_redis(turn: Turn) -> None:
    turn.stack.redis.stop()
    time.sleep(1.0)
    turn.stack.redis.start()


def drop_the_workers_database_connections(turn: Turn) -> None:
    """Between the worker's queries: what its pool holds is dead."""
    terminate_the_workers_backends()


def drop_the_workers_database_connection_mid_query(turn: Turn) -> None:
    """During one: the run's row held, the worker's next write of it (a lease renewal, an
    event batch) waits, and its connection is terminated under it."""
    with transaction.atomic():
        Run.objects.select_for_update().get(uuid=turn.created["run_uuid"])
        wait_for(waiting_on_a_lock, 20, "the worker's query")
        terminate_the_workers_backends()


def terminate_the_workers_backends() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [WORKER_APP],
        )
        assert cursor.fetchone()[0] > 0


def tokens(count: int, pause: float) -> list[tuple[str, Any]]:
    """``count`` distinct tokens ``pause`` s apart: a lost or repeated one shows in the text."""
    return [step for i in range(count) for step in (("delay", pause), ("text", f"t{i} "))]


# The lease covers a call's timeout (a slow tool is not a dead worker): the shortest that the
# kill, right after the call arrives, still falls within.
REFUND = {"name": "refund", "kind": "webhook", "input_schema": {"type": "object"}, "timeout": 2}


def requeued_once(turn: Turn, resumed: StreamRead) -> None:
    assert turn.run.attempts == 2


def worker_lost(turn: Turn, resumed: StreamRead) -> None:
    run = turn.run
    assert run.error_code == "worker_lost"
    assert run.agent_message.status == Message.Status.FAILED


def sent_once_outcome_unknown(turn: Turn, resumed: StreamRead) -> None:
    """The call had started when its worker died: never sent again, reported as failed."""
    call = ToolCall.objects.get(run=turn.run)
    assert [body["call_id"] for body in turn.receiver.calls] == [call.call_id]
    assert turn.receiver.idempotency_keys == [call.call_id]
    assert (call.status, call.error.split(":")[0]) == (ToolCall.Status.FAILED, "outcome_unknown")
    assert resumed.types.count("tool-output-error") == 1


def sent_again_with_the_same_key(turn: Turn, resumed: StreamRead) -> None:
    """An idempotent tool's call is sent again, with the same call id and key."""
    call = ToolCall.objects.get(run=turn.run)
    assert [body["call_id"] for body in turn.receiver.calls] == [call.call_id, call.call_id]
    assert turn.receiver.idempotency_keys == [call.call_id, call.call_id]
    assert call.status == ToolCall.Status.SUCCEEDED
    assert resumed.types.count("tool-output-available") == 1


@dataclass(frozen=True)
class Stage:
    name: str
    replies: list[list[tuple[str, Any]]]
    head: dict[str, Any]  # how far the leaving client reads before the fault (read_stream's max_events / until)
    fault: Callable[[Turn], None]
    status: str
    text: str | None  # the whole reply, when it is known in advance (else: the text clients saw)
    tool: dict[str, Any] | None = None  # the agent's webhook tool (its url is the receiver's)
    check: Callable[[Turn, StreamRead], None] | None = None  # what else the stage holds


STAGES = [
    Stage(
        "kill before the first token",
        # Keep-alives, not silence: a silent model times out (GENIE_PROVIDER_TIMEOUT, 2 s here).
        [[("quiet", 30.0), ("text", "never")], [("text", "second "), ("text", "try")]],
        {"until": "start-step"},
        kill_once_the_model_is_asked,
        Run.Status.SUCCEEDED,
        "second try",
        check=requeued_once,
    ),
    Stage("kill mid-reply", [tokens(60, 0.1)], {"max_events": 6}, kill, Run.Status.FAILED, None, check=worker_lost),
    Stage(
        "kill during a tool call",
        [
            [("text", "Refunding. "), ("tool_call", {"id": "a", "name": "refund", "arguments": '{"order": 7}'})],
            [("text", "Done.")],
        ],
        {"until": "tool-input-available"},
        kill_during_the_call,
        Run.Status.SUCCEEDED,
        "Refunding. Done.",
        tool=REFUND,
        check=sent_once_outcome_unknown,
    ),
    Stage(
        "kill during an idempotent tool's call",
        [
            [("text", "Refunding. "), ("tool_call", {"id": "a", "name": "refund", "arguments": '{"order": 7}'})],
            [("text", "Done.")],
        ],
        {"until": "tool-input-available"},
        kill_during_the_call,
        Run.Status.SUCCEEDED,
        "Refunding. Done.",
        tool={**REFUND, "idempotent": True},
        check=sent_again_with_the_same_key,
    ),
    Stage(
        "kill while ending",
        [[("text", "All "), ("delay", 1.0), ("text", "done.")]],
        {"until": "text-delta"},
        kill_while_ending,
        Run.Status.SUCCEEDED,
        "All done.",
    ),
    Stage("Redis restart", [tokens(60, 0.05)], {"max_events": 6}, restart_redis, Run.Status.SUCCEEDED, None),
    Stage(
        "PostgreSQL connections lost",
        [tokens(60, 0.05)],
        {"max_events": 6},
        drop_the_workers_database_connections,
        Run.Status.SUCCEEDED,
        "".join(f"t{i} " for i in range(60)),
    ),
    Stage(
        "PostgreSQL connection lost mid-query",
        [tokens(60, 0.05)],
        {"max_events": 6},
        drop_the_workers_database_connection_mid_query,
        Run.Status.SUCCEEDED,
        "".join(f"t{i} " for i in range(60)),
    ),
]


@pytest.mark.parametrize("stage", STAGES, ids=[stage.name for stage in STAGES])
def test_every_view_of_a_turn_agrees_after(stage, fault_stack, fake_llm, receiver, transactional_db):
    fault_stack.ready()
    live = LiveStack.create(base_url=fault_stack.url, fake_llm=fake_llm)
    if stage.tool:
        live.agent.tools = [{**stage.tool, "url": receiver.url}]
        live.agent.save()
        receiver.secret = live.agent.webhook_secret
        receiver.hold = threading.Event()
    live.script(*stage.replies)
    created = live.start_session("Go", title="Faults")  # titled: no title task asks the model
    watched: dict[str, StreamRead] = {}
    watcher = threading.Thread(
        target=lambda: watched.update(live=live.read_until_finish(created["stream_url"], last_event_id=0, timeout=60))
    )
    watcher.start()
    head = live.read_stream(created["stream_url"], last_event_id=0, **stage.head)

    turn = Turn(fault_stack, live, created, receiver)
    stage.fault(turn)

    rest = live.read_until_finish(created["stream_url"], last_event_id=head.ids[-1], timeout=60)
    watcher.join(60)
    run = live.wait_run(created["run_uuid"])
    replayed = live.read_stream(created["stream_url"], last_event_id=0)
    fault_stack.stream_expired(created["uuid"])
    from_postgresql = live.read_stream(created["stream_url"], last_event_id=0)
    status = live.api("GET", f"sessions/{created['uuid']}/runs/{created['run_uuid']}").json()["status"]
    transcript = live.api("GET", f"sessions/{created['uuid']}/messages").json()["results"][-1]

    resumed = StreamRead(status=200, headers=httpx.Headers(), events=head.events + rest.events)
    views = {
        "live": watched["live"],
        "resumed": resumed,
        "replayed": replayed,
        "replayed after the Stream expired": from_postgresql,
        "stored": stored_view(created["run_uuid"]),
    }
    assert (status, run.status) == (stage.status, stage.status)
    assert transcript["text"] == run.agent_message.text
    assert_views_agree(views, status=stage.status, transcript=transcript)
    if stage.text is not None:
        assert transcript["text"] == stage.text
    else:
        assert head.text
        assert transcript["text"].startswith(head.text)
    if stage.check is not None:
        stage.check(turn, resumed)


# --- Redis down for longer --------------------------------------------------------------


def test_redis_restart_mid_stream(fault_stack, fake_llm, transactional_db):
    fault_stack.ready()
    server, url = fault_stack.redis, fault_stack.url
    live = LiveStack.create(base_url=url, fake_llm=fake_llm)
    live.script([("delay", 0.2), ("text", "before "), *[("delay", 0.05), ("text", "x")] * 30], [("text", "after")])
    created = live.start_session(title="Outage")
    head = live.read_stream(created["stream_url"], max_events=3)

    server.stop()
    started = time.monotonic()
    cut = live.read_stream(created["stream_url"], last_event_id=head.ids[-1], timeout=10)
    refused = live.api("POST", "sessions", json={"text": "during the outage"})
    sessions_during = Session.objects.count()
    run = live.wait_run(created["run_uuid"], timeout=30)  # the worker finishes on PostgreSQL alone

    assert time.monotonic() - started < 10  # the open stream ended, it did not hang
    assert cut.status == 200  # served what PostgreSQL had, then closed
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "redis_unavailable"
    assert sessions_during == 1
    assert run.agent_message.text.startswith("before ")

    server.start()
    events = live.api("GET", f"sessions/{created['uuid']}/events?page_size=100").json()
    resumed = live.read_stream(created["stream_url"], last_event_id=head.ids[-1])
    wait_for(lambda: live.api("GET", "sessions").status_code == 200, 10, "api")
    deadline = time.monotonic() + 30
    while (
        again := live.api("POST", "sessions", json={"text": "after the outage", "title": "Outage"})
    ).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    fresh = live.read_stream(again.json()["stream_url"], last_event_id=0, timeout=30)

    assert [e["type"] for e in events["results"]][-1] == "finish"
    assert head.text + resumed.text == run.agent_message.text
    assert resumed.types[-1] == "finish"
    assert again.status_code == 201
    assert fresh.text == "after"
    assert httpx.get(f"{url}/healthz").json()["checks"]["redis"] == "ok"


def test_a_resume_right_after_redis_returns_loses_and_repeats_nothing(fault_stack, fake_llm, transactional_db):
    """Redis restarts (empty) mid-reply and the client resumes at once, while the events of
    the outage are still only in the worker's unflushed batch: the relay must not skip
    them. The worker treats the failed ack of its task as the expected case."""
    fault_stack.ready()
    live = LiveStack.create(base_url=fault_stack.url, fake_llm=fake_llm)
    live.script([("delay", 0.2), *[step for i in range(80) for step in (("text", f"t{i} "), ("delay", 0.05))]])
    created = live.start_session(title="Outage")
    head = live.read_stream(created["stream_url"], max_events=6)

    fault_stack.redis.stop()
    time.sleep(1.0)
    fault_stack.redis.start()
    rest = live.read_until_finish(created["stream_url"], last_event_id=head.ids[-1], timeout=40)
    run = live.wait_run(created["run_uuid"], timeout=30)

    ids = head.ids + rest.ids
    assert ids == sorted(set(ids))  # nothing twice, in order
    assert head.text + rest.text == run.agent_message.text == "".join(f"t{i} " for i in range(80))
    assert rest.types[-1] == "finish"
    assert not any("Couldn't ack" in worker.log_text() for worker in fault_stack.workers)


def test_a_queued_run_whose_task_died_with_redis_starts_when_redis_is_back(fault_stack, fake_llm, transactional_db):
    """A run is queued and its task is in Redis when Redis restarts empty: the task is gone.
    The workers' consumers, reconnecting, find the broker's mark gone and enqueue the run
    again at once (beat is paused, so the sweeper's grace cannot be what starts it; issue 26
    measured 39 s with it)."""
    fault_stack.ready()
    live = LiveStack.create(base_url=fault_stack.url, fake_llm=fake_llm)
    live.script([("text", "after all")])
    # Queued as a committed turn whose task the restart took: the row, and no task.
    run = RunFactory(session__agent=live.agent, user_message__text="hello", agent_message__text="")

    fault_stack.beat.stop()
    try:
        fault_stack.redis.stop()
        fault_stack.redis.start()
        done = live.wait_run(str(run.uuid), timeout=30)
    finally:
        fault_stack.beat.start()

    assert done.status == Run.Status.SUCCEEDED
    assert done.agent_message.text == "after all"
