"""The event log's Redis side: the writer sends each event without waiting for its reply,
keeps the Stream in emit order, reads the replies in batches (the stop flag rides on them),
and never hands its connection back to the pool with replies unread."""

from __future__ import annotations

import logging
from unittest import mock

import pytest

from chat.services import start_session
from genie.auth import caller_for_user
from genie.connections import redis_client
from runs import tasks
from runs.events import UNREAD_REPLIES_MAX, RunEventWriter, StreamEvent, stop_key, stream_key


@pytest.fixture
def run(db, member, agent):
    with mock.patch.object(tasks.execute_run, "delay"):
        _, run, _ = start_session(caller=caller_for_user(member.user), agent=agent, text="hi")
    return run


def stream_events(run) -> list[StreamEvent]:
    entries = redis_client().xrange(stream_key(str(run.session.uuid)))
    return [StreamEvent.from_stream_entry(entry_id, fields) for entry_id, fields in entries]


def test_events_reach_the_stream_in_emit_order_before_any_reply_is_read(run):
    writer = RunEventWriter.open(run)
    writer.emit("start", messageId="m")
    for n in range(5):
        writer.emit("text-delta", id="t", delta=f"w{n}")

    assert len(writer._unread) == 6  # sent, replies not read yet

    # Once their replies are read, Redis has run them: another connection sees them.
    writer.read_replies()
    assert [(e.seq, e.type) for e in stream_events(run)] == [(1, "start")] + [(n, "text-delta") for n in range(2, 7)]
    assert writer._unread == []
    writer.close()


def test_the_stop_flag_is_read_from_the_replies(run, settings):
    writer = RunEventWriter.open(run)
    writer.emit("start", messageId="m")
    assert writer.stop_requested(fresh_for=60) is False

    redis_client().set(stop_key(str(run.uuid)), 1)
    writer.emit("text-delta", id="t", delta="x")

    assert writer.stop_requested(fresh_for=60) is True
    writer.close()


def test_a_stale_reply_asks_redis_itself(run):
    writer = RunEventWriter.open(run)
    writer.emit("start", messageId="m")
    writer.read_replies()
    redis_client().set(stop_key(str(run.uuid)), 1)

    # The last reply said "not set", but it is older than the caller accepts.
    assert writer.stop_requested(fresh_for=0) is True
    writer.close()


def test_replies_are_read_when_too_many_wait(run):
    writer = RunEventWriter.open(run)
    for n in range(UNREAD_REPLIES_MAX + 3):
        writer.emit("text-delta", id="t", delta=str(n))

    assert len(writer._unread) == 3
    writer.close()


def test_close_reads_every_reply_before_the_connection_goes_back_to_the_pool(run):
    writer = RunEventWriter.open(run)
    for n in range(10):
        writer.emit("text-delta", id="t", delta=str(n))
    connection = writer.redis.connection

    writer.close()

    # The pool's next user of this connection gets its own reply, not ours.
    client = redis_client()
    assert connection in client.connection_pool._available_connections
    assert client.ping() is True
    assert not connection.can_read()
    assert len(stream_events(run)) == 10


def test_a_rejected_id_is_logged_and_the_writer_goes_on(run, caplog):
    writer = RunEventWriter.open(run)
    writer.emit("start", messageId="m")
    writer.read_replies()
    again = RunEventWriter(run=run, next_seq=1)  # a redelivered task writing ids already there

    with caplog.at_level(logging.WARNING, logger="runs.events"):
        again.emit("start", messageId="m")
        again.emit("text-delta", id="t", delta="late")
        again.read_replies()

    assert "Redis rejected event 1" in caplog.text
    assert [e.seq for e in stream_events(run)] == [1, 2]
    assert again.stop_requested(fresh_for=60) is False
    writer.close()
    again.close()
