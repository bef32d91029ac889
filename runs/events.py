"""The event log: one writer for every run event.

Each event gets the session's next integer id (``seq``). The writer appends it to the
session's Redis Stream with the explicit id ``<seq>-0`` (Redis rejects a duplicate from a
redelivered task) and publishes it on the session's channel in the same round trip, then
buffers it for PostgreSQL, where events land in batches: never a query per token.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hiredis
import redis
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from genie.connections import redis_client, release_connection, retry_when_disconnected
from runs import vocabulary as ev
from runs.models import Run, RunEvent

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stream_key(session_uuid: str) -> str:
    return f"genie:events:{session_uuid}"


def channel_name(session_uuid: str) -> str:
    return f"genie:live:{session_uuid}"


def stop_key(run_uuid: str) -> str:
    return f"genie:stop:{run_uuid}"


# XADD with the event's own id, PUBLISH, and EXPIRE when asked: one command, which also
# answers whether the run's stop flag is set (the turn loop's poll rides on it). A
# rejected id (a redelivered duplicate) stops the script before the PUBLISH. Sent as EVAL
# with its text (Redis caches it by its digest): no NOSCRIPT to recover from when replies
# are read long after the command was sent.
PUBLISH_EVENT = """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[2], 'r', ARGV[3], 't', ARGV[4], 'd', ARGV[5], 'c', ARGV[8])
redis.call('PUBLISH', KEYS[2], ARGV[6])
if ARGV[7] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[7]) end
return redis.call('EXISTS', KEYS[3])
"""
PUBLISH_EVENT_BYTES = PUBLISH_EVENT.encode()

# Replies a writer leaves unread at most before it reads them (each is a few bytes).
UNREAD_REPLIES_MAX = 256


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """An event as relayed: its id, run, type, the JSON of its SSE ``data``, and when it was
    written (``created_at``: microseconds since the epoch, the stored row's ``created_at``;
    0 when unknown). A format that shows the time (seed 001) reads it from here, never from
    the chunk: AI SDK chunks carry no keys of ours."""

    seq: int
    run_uuid: str
    type: str
    data_json: str
    created_at: int = 0

    def pack(self) -> str:
        return f"{self.seq}\n{self.run_uuid}\n{self.type}\n{self.created_at}\n{self.data_json}"

    @classmethod
    def unpack(cls, raw: str | bytes) -> StreamEvent:
        text = raw.decode() if isinstance(raw, bytes) else raw
        seq, run_uuid, type_, created_at, data_json = text.split("\n", 4)
        return cls(int(seq), run_uuid, type_, data_json, int(created_at))

    @classmethod
    def from_stream_entry(cls, entry_id: bytes | str, fields: dict) -> StreamEvent:
        seq = int((entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-", 1)[0])
        created_at = int(fields.get(b"c", 0))
        return cls(seq, fields[b"r"].decode(), fields[b"t"].decode(), fields[b"d"].decode(), created_at)

    @classmethod
    def from_row(cls, row: RunEvent, run_uuid: str, *, after: int = 0) -> StreamEvent:
        """A stored row as one event (a merged delta with the last of its ids), without
        what a reader that has every id up to ``after`` already saw."""
        data_json = ev.to_json(row.data_after(after))
        return cls(row.seq, run_uuid, row.type, data_json, epoch_micros(row.created_at))

    @classmethod
    def from_row_through(cls, row: RunEvent, run_uuid: str, seq: int) -> StreamEvent:
        """The part of a merged delta up to ``seq``, as the event ``seq``."""
        data_json = ev.to_json(row.data_through(seq))
        return cls(seq, run_uuid, row.type, data_json, epoch_micros(row.created_at))

    @property
    def created_at_iso(self) -> str:
        """``created_at`` in ISO 8601, UTC, as the API writes times (now when unknown)."""
        return iso_utc(EPOCH + timedelta(microseconds=self.created_at) if self.created_at else timezone.now())

    def sse(self) -> str:
        """The event as the log's own SSE frame (``id: <seq>``, ``data: <chunk>``)."""
        return ev.sse_frame(self.data_json, event_id=self.seq)


def iso_utc(moment: datetime) -> str:
    """A time as the API writes it: ISO 8601 in UTC, ``Z`` for the zone (DRF's format)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def last_seq(session_id: int, session_uuid: str, *, stored: int | None = None) -> int:
    """The session's last event id: the larger of PostgreSQL's (``stored``, when the caller
    has read it already) and Redis's (which runs ahead of PostgreSQL by at most one
    unflushed batch)."""
    pg = stored if stored is not None else RunEvent.objects.filter(session_id=session_id).aggregate(m=Max("seq"))["m"]
    pg = pg or 0
    try:
        entries = redis_client().xrevrange(stream_key(session_uuid), count=1)
    except redis.RedisError:
        entries = []
    live = int(entries[0][0].decode().split("-", 1)[0]) if entries else 0
    return max(pg, live)


class RunEventWriter:
    """Writes one run's events. Not thread-safe: one writer per executing run.

    ``emit`` sends one Redis command and does not wait for its reply: a streamed token
    costs the worker one wake-up (the model's bytes arriving), not two. Commands on the
    writer's one connection run in order, so the Stream's order is the order of ``emit``;
    the replies (whether the stop flag is set, or a rejected duplicate id) are read in a
    batch when the stop flag is asked for, when ``UNREAD_REPLIES_MAX`` are waiting, and at
    ``close``. PostgreSQL sees a bulk insert every ``GENIE_EVENT_FLUSH_INTERVAL`` seconds or
    ``GENIE_EVENT_FLUSH_SIZE`` rows, with the deltas of each batch merged (see ``RunEvent``).
    """

    def __init__(self, *, run: Run, next_seq: int) -> None:
        self.run = run
        self.run_uuid = str(run.uuid)
        self.session_id = run.session_id
        self.session_uuid = str(run.session.uuid)
        self.next_seq = next_seq
        self._pending: list[RunEvent] = []
        self._last_flush = time.monotonic()
        self._redis_ok = True
        self._redis: redis.Redis | None = None
        self._key = stream_key(self.session_uuid)
        self._channel = channel_name(self.session_uuid)
        self._stop_key = stop_key(self.run_uuid)
        self._unread: list[int] = []  # the seq of each event whose reply is still on the socket
        self._last_sent_at = 0.0
        self.stop_flag_seen: tuple[float, bool] | None = None  # (when, set?) as the last read reply said

    @property
    def redis(self) -> redis.Redis:
        """This run's own connection from the process pool, held until ``close``: dozens of
        runs per worker contended on the pool's lock twice per command. Connects on first
        use (raises RedisError while Redis is down). Its replies are read in order, so any
        other command on it goes after ``read_replies``."""
        if self._redis is None:
            self._redis = redis.Redis(connection_pool=redis_client().connection_pool, single_connection_client=True)
        return self._redis

    def close(self) -> None:
        """Read what is still unread and give the connection back to the pool; one whose
        replies cannot be read is dropped, never handed to another user mid-reply."""
        if self._redis is None:
            return
        try:
            self.read_replies()
        finally:
            if self._unread:  # an exception left replies on the socket
                self._redis.connection.disconnect()
                self._unread = []
            self._redis.close()
            self._redis = None

    @classmethod
    def open(cls, run: Run, *, stored_seq: int | None = None) -> RunEventWriter:
        """A writer continuing the session's ids. Call with the session row locked, or from
        the one worker holding the run's lease. ``stored_seq``: the session's last id in
        PostgreSQL, when the caller read it with the lock."""
        return cls(run=run, next_seq=last_seq(run.session_id, str(run.session.uuid), stored=stored_seq) + 1)

    def emit(self, type_: str, **fields: Any) -> int:
        event = self.record(type_, **fields)
        self.publish(event)
        if (
            len(self._pending) >= settings.GENIE_EVENT_FLUSH_SIZE
            or time.monotonic() - self._last_flush >= settings.GENIE_EVENT_FLUSH_INTERVAL
        ):
            self.flush()
        return event.seq

    def record(self, type_: str, **fields: Any) -> StreamEvent:
        """Take the next id and buffer the event for PostgreSQL without publishing it.
        ``finish`` goes this way: stored with the run's final status, published after."""
        seq = self.next_seq
        self.next_seq += 1
        data = {"type": type_, **fields}
        last = self._pending[-1] if self._pending else None
        if last is not None and last.can_merge(type_, fields):
            last.merge_delta(seq, fields["delta"])
            created_at = last.created_at  # the merged row's time: what the events endpoint shows
        else:
            created_at = timezone.now()
            self._pending.append(
                RunEvent(
                    session_id=self.session_id,
                    run_id=self.run.pk,
                    first_seq=seq,
                    seq=seq,
                    type=type_,
                    data=dict(data),
                    created_at=created_at,
                )
            )
        data_json = ev.to_json(data)
        return StreamEvent(seq, self.run_uuid, type_, data_json, epoch_micros(created_at))

    def publish(self, event: StreamEvent) -> None:
        """Send the event to the session's Stream and channel; its reply is read later."""
        expire = settings.GENIE_STREAM_TTL if event.seq == 1 or event.type in {ev.START, ev.FINISH} else 0
        command = hiredis.pack_command(
            (
                b"EVAL",
                PUBLISH_EVENT_BYTES,
                3,
                self._key,
                self._channel,
                self._stop_key,
                settings.GENIE_STREAM_MAXLEN,
                f"{event.seq}-0",
                event.run_uuid,
                event.type,
                event.data_json,
                event.pack(),
                expire,
                event.created_at,
            )
        )
        try:
            # check_health=False: a health check's PING would read an unread reply as its own.
            self.redis.connection.send_packed_command([command], check_health=False)
        except redis.RedisError:
            self._redis_down()
            return
        self._redis_ok = True
        self._unread.append(event.seq)
        self._last_sent_at = time.monotonic()
        if len(self._unread) >= UNREAD_REPLIES_MAX:
            self.read_replies()

    def read_replies(self) -> None:
        """Read the replies of the events sent so far: the last says whether the run's
        stop flag was set when that event was written."""
        if not self._unread or self._redis is None:
            return
        connection = self._redis.connection
        while self._unread:
            seq = self._unread.pop(0)
            try:
                flag = connection.read_response()
            except redis.ResponseError:
                # Our id is not above the Stream's top: a redelivered duplicate. PostgreSQL's
                # unique (session, seq) is the final word; keep going.
                logger.warning("Redis rejected event %s of run %s", seq, self.run_uuid)
            except redis.RedisError:  # the connection is gone (read_response dropped it)
                self._unread = []
                self._redis_down()
                return
            else:
                if not self._unread:
                    self.stop_flag_seen = (self._last_sent_at, bool(flag))

    def stop_requested(self, *, fresh_for: float) -> bool:
        """Whether the run's stop flag is set: as the last event's reply said, when that
        event went out within ``fresh_for`` seconds; asked of Redis otherwise. Raises
        RedisError while Redis is down."""
        self.read_replies()
        seen = self.stop_flag_seen
        if seen is not None and time.monotonic() - seen[0] < fresh_for:
            return seen[1]
        if not self._redis_ok:
            raise redis.ConnectionError("Redis is unavailable")
        return bool(self.redis.exists(self._stop_key))

    def _redis_down(self) -> None:
        if self._redis_ok:
            logger.warning("Redis unavailable; run %s events go to PostgreSQL only", self.run_uuid)
        self._redis_ok = False

    def flush(self) -> None:
        """Store the buffered events (one bulk insert; a batch stored already is ignored, so
        a retry after a lost connection is harmless)."""
        if self._pending:
            pending = self._pending
            retry_when_disconnected(
                lambda: RunEvent.objects.bulk_create(pending, ignore_conflicts=True), what="an event batch"
            )
            self._pending = []
            release_connection()
        self._last_flush = time.monotonic()

    def rewind(self, next_seq: int) -> None:
        """Forget what was recorded from ``next_seq`` on (nothing buffered before it): a
        transaction that stored those events failed as a whole and is to be run again."""
        self.next_seq = next_seq
        self._pending = []


@dataclass
class OpenParts:
    """What of a run's stream is open and must be closed before its ``finish``: whether
    its ``start`` went out, and whether a step or a text part is still open."""

    started: bool = False
    step_open: bool = False
    text_open: bool = False

    @classmethod
    def of(cls, types: list[str]) -> OpenParts:
        parts = cls()
        for type_ in types:
            if type_ == ev.START:
                parts.started = True
            elif type_ in {ev.START_STEP, ev.FINISH_STEP}:
                parts.step_open = type_ == ev.START_STEP
            elif type_ in {ev.TEXT_START, ev.TEXT_END}:
                parts.text_open = type_ == ev.TEXT_START
        return parts


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    type: str
    data: dict[str, Any]


def read_run_log(run: Run, *, store_unflushed: bool = False) -> list[LoggedEvent]:
    """Every event of ``run`` written so far, in order: PostgreSQL's rows, then what only
    Redis has yet (the last unflushed batch of a worker that died). What a client saw is
    what this returns.

    ``store_unflushed``: also store what only Redis has, for whoever takes a run over from
    a dead worker (the sweeper re-queuing it, a bystander ending it): the stored log then
    holds every event clients saw, and a replay from PostgreSQL after the Stream expired
    lacks none of them (the dead worker's last batch, a re-queued run's ``start``)."""
    rows = [LoggedEvent(row.seq, row.type, row.data) for row in RunEvent.objects.filter(run=run).order_by("seq")]
    top = rows[-1].seq if rows else 0
    run_uuid = str(run.uuid).encode()
    try:
        entries = redis_client().xrange(stream_key(str(run.session.uuid)), min=f"{top + 1}-0")
    except redis.RedisError:
        entries = []
    unflushed = []
    for entry_id, fields in entries:
        if fields.get(b"r") == run_uuid:
            event = StreamEvent.from_stream_entry(entry_id, fields)
            unflushed.append(LoggedEvent(event.seq, event.type, json.loads(event.data_json)))
    if store_unflushed and unflushed:
        RunEvent.objects.bulk_create(
            [
                RunEvent(session_id=run.session_id, run=run, first_seq=e.seq, seq=e.seq, type=e.type, data=e.data)
                for e in unflushed
            ],
            ignore_conflicts=True,  # a late flush of the same batch by a worker thought dead
        )
    return rows + unflushed


def logged_text(events: list[LoggedEvent]) -> str:
    return "".join(event.data.get("delta", "") for event in events if event.type == ev.TEXT_DELTA)


@dataclass(frozen=True)
class PausePoint:
    """Where a run paused: the id of the ``finish-step`` that ended the step (a
    continuation streams what follows it) and the length of the reply's text by then
    (what a continuation's answer does not say again)."""

    seq: int
    text_length: int


def pause_point(run: Run, call_ids: list[str]) -> PausePoint:
    """Where ``run`` paused for ``call_ids`` (their approval requests or client tool
    calls). Reads the run's log (PostgreSQL, then Redis)."""
    log = read_run_log(run)
    requested = [
        index
        for index, event in enumerate(log)
        if (event.type == ev.TOOL_APPROVAL_REQUEST and event.data.get("toolCallId") in call_ids)
        or (event.type == ev.DATA_CLIENT_TOOL_CALL and event.data.get("data", {}).get("call_id") in call_ids)
    ]
    start = requested[-1] if requested else len(log) - 1
    seq = next((event.seq for event in log[start:] if event.type == ev.FINISH_STEP), log[-1].seq if log else 0)
    return PausePoint(seq, len(logged_text([event for event in log if event.seq <= seq])))
