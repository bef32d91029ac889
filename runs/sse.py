"""The SSE relay: ``GET sessions/{s}/stream`` and ``GET sessions/{s}/runs/{r}/stream``.

Plain ASGI apps routed by Channels (a lean path: no Django middleware per stream, and a
disconnect is seen at once). All database work happens in ``plan_stream`` before the
first byte; afterwards the stream reads Redis: the backlog once, then live events from
the process-wide fan-out. PostgreSQL again only for a gap Redis lost, and once per
heartbeat of a quiet stream (a run ended in PostgreSQL whose worker died before
publishing its end: its ``finish`` still reaches the stream).

Rules (AI SDK UI message stream protocol): without Last-Event-ID the session stream
replays the active run and tails it, or answers 204 when no run is active; with it,
every later event of the session in order, and 204 once the finish was delivered. A
run's own stream replays that run, finished or not. Each stream ends after the finish
of the last run it covers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import auth
from django.db.models import Max
from django.http import HttpRequest
from django.http.cookie import parse_cookie

from chat.models import Agent, Session
from genie import nul
from genie.auth import Caller, OriginNotAllowed, auth_epoch, caller_for_user, parse_bearer, resolve_bearer_key
from genie.cors import Headers, asgi_cors
from genie.exceptions import NOT_FOUND_FOR_PUBLISHABLE, ErrorVoice, error_body_for_status
from genie.throttles import ThrottleSubject, auth_failure_wait, client_ip, record_auth_failure, throttle_wait
from runs.events import StreamEvent, channel_name, stream_key
from runs.fanout import Subscriber, async_redis, live_fanout, relayed_events
from runs.formats import StreamFormat, UIMessageFormat
from runs.models import Run, RunEvent
from runs.stream_slots import credential_ident, release_slot, take_slot
from runs.vocabulary import FINISH

logger = logging.getLogger(__name__)

SEND_CHUNK_BYTES = 64 * 1024


def preamble() -> bytes:
    return UIMessageFormat().preamble()


@dataclass(frozen=True)
class StreamPlan:
    session_uuid: str
    after_seq: int
    close_after_run: str  # the stream ends after this run's finish
    run_filter: str | None  # a run's own stream shows only that run
    backlog: list[StreamEvent]
    slot: tuple[str, str] = ("", "")  # (credential, slot id) held while the stream is open
    delivered_seq: int = 0  # the client has these already (a format that reads the whole run)
    frames_delivered: tuple[int, int] = (0, 0)  # (seq, how many of its frames the client has)


@dataclass(frozen=True)
class StreamRefusal:
    status: int
    code: str = ""
    message: str = ""
    retry_after: int | None = None


NOT_AUTHENTICATED = StreamRefusal(
    401, "not_authenticated", "Authentication credentials were not provided or are invalid."
)


class UndecodableHeader(ValueError):
    pass


def header_text(headers: dict[bytes, bytes], name: bytes) -> str:
    """A header's value as text; raises UndecodableHeader for bytes that are not UTF-8."""
    try:
        return headers.get(name, b"").decode()
    except UnicodeDecodeError as exc:
        raise UndecodableHeader(name.decode()) from exc


def authenticate_scope(headers: dict[bytes, bytes]) -> Caller | None:
    """Bearer key or Django session cookie, the same rules as the REST API. Raises
    UndecodableHeader for a credential header that is not text. A bearer key is looked up
    in the process's cache under the current revocation epoch (``genie.auth.BearerKeyCache``)."""
    secret = header_text(headers, b"x-session-secret") or None
    key = parse_bearer(header_text(headers, b"authorization"))
    if key is not None:
        return resolve_bearer_key(key, session_secret=secret, epoch=auth_epoch())
    cookies = parse_cookie(headers.get(b"cookie", b"").decode("latin-1"))
    session_key = cookies.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return caller_for_user(auth.get_user(request))


def parse_last_event_id(
    headers: dict[bytes, bytes], query: dict[str, list[str]], *, frames: bool = False
) -> tuple[int, int | None] | StreamRefusal | None:
    """``(seq, None)`` for ``Last-Event-ID: <seq>``; with ``frames`` (a format that names
    the frames of one event, seed 001), ``(seq, i)`` for ``<seq>.<i>``: the client has
    every event before ``seq`` and the frames of ``seq`` up to the ``i``-th."""
    refusal = StreamRefusal(400, "invalid_last_event_id", "Last-Event-ID must be a non-negative integer.")
    try:
        raw = header_text(headers, b"last-event-id").strip() or (query.get("last_event_id") or [""])[0].strip()
    except UndecodableHeader:
        return refusal
    if not raw:
        return None
    seq_text, dot, frame_text = raw.partition(".")
    if dot and not frames:
        return refusal
    try:
        seq, frame = int(seq_text), int(frame_text) if dot else None
    except ValueError:
        return refusal
    if seq < 0 or (frame is not None and (frame < 0 or seq < 1)):
        return refusal
    return seq, frame


def stream_caller(headers: dict[bytes, bytes], meta: dict[str, str]) -> Caller | StreamRefusal:
    """Who opens the stream, as ``BearerTokenAuthentication`` decides for the REST API: a
    client that sent too many bad keys (GENIE_RATE_AUTH_FAILURES) is refused before its
    key is looked at, and a bad key counts as one more."""
    subject = ThrottleSubject(auth=None, META=meta)
    if (wait := auth_failure_wait(subject)) is not None:
        return StreamRefusal(429, "rate_limited", "Request was throttled.", retry_after=math.ceil(wait))
    try:
        caller = authenticate_scope(headers)
    except UndecodableHeader as exc:
        if str(exc) == "authorization":
            return NOT_AUTHENTICATED
        return StreamRefusal(400, "invalid_header", f"The {exc} header is not valid UTF-8.")
    if caller is None:
        if headers.get(b"authorization"):
            record_auth_failure(subject)
        return NOT_AUTHENTICATED
    if not caller.allows_origin(headers.get(b"origin", b"").decode("latin-1") or None):
        return StreamRefusal(403, OriginNotAllowed.default_code, OriginNotAllowed.default_detail)
    return caller


def plan_stream(
    *,
    headers: dict[bytes, bytes],
    query: dict[str, list[str]],
    session_uuid: str | None,
    run_uuid: str | None,
    client: tuple[str, int] | None = None,
    chat_id: str | None = None,
    agent_handle: str | None = None,
    whole_run: bool = False,
) -> StreamPlan | StreamRefusal:
    """Authenticate, apply the caller's rate limit and open-stream cap, find what this
    stream covers, and load its stored backlog. ``agent_handle`` (a handle or uuid):
    the session must be that agent's (an adapter's URL names it); ``whole_run``: see
    ``StreamFormat.reads_whole_run``.

    Queries: auth (none for a bearer key this process holds under the current revocation
    epoch, else 1-2), the session, its run(s), the backlog from PostgreSQL (a run's own
    stream from its start: one query finds where that is too).
    """
    meta = {"REMOTE_ADDR": client[0] if client else "", "HTTP_X_FORWARDED_FOR": forwarded_for(headers)}
    caller = stream_caller(headers, meta)
    if isinstance(caller, StreamRefusal):
        return caller
    wait = throttle_wait(caller=caller, meta=meta)
    if wait is not None:
        return StreamRefusal(429, "rate_limited", "Request was throttled.", retry_after=math.ceil(wait))
    if chat_id is not None:  # an AI SDK client names its session by its own chat id
        sessions = Session.objects.with_chat_id(caller, chat_id)
    else:
        sessions = Session.objects.reachable_by(caller).filter(uuid=session_uuid)
    if agent_handle is not None:
        sessions = sessions.filter(agent__in=Agent.objects.by_handle_or_uuid(agent_handle))
    try:
        # One row (a uuid, or a chat id unique per caller); get() orders nothing, and the
        # plan reads no other field.
        session = sessions.only("id", "uuid").get()
    except Session.DoesNotExist:
        return StreamRefusal(
            404, "not_found", NOT_FOUND_FOR_PUBLISHABLE if caller.lacks_session_secret else "Not found."
        )
    resume = parse_last_event_id(headers, query, frames=whole_run)
    if isinstance(resume, StreamRefusal):
        return resume
    plan = plan_resume(session=session, resume=resume, run_uuid=run_uuid, whole_run=whole_run)
    if isinstance(plan, StreamRefusal):
        return plan
    ident = credential_ident(caller, client_ip(meta))
    slot = take_slot(ident)
    if slot is None:
        return StreamRefusal(
            429,
            "too_many_streams",
            f"This credential has {settings.GENIE_MAX_STREAMS_PER_KEY} streams open; close one first.",
            retry_after=1,
        )
    return replace(plan, slot=(ident, slot))


def plan_resume(
    *, session: Session, resume: tuple[int, int | None] | None, run_uuid: str | None, whole_run: bool
) -> StreamPlan | StreamRefusal:
    """``plan_backlog`` from a parsed Last-Event-ID; a client that has only part of an
    event's frames (``<seq>.<i>``) gets that event again, less what it has."""
    if resume is None or resume[1] is None:
        last_event_id = resume[0] if resume is not None else None
        return plan_backlog(session=session, last_event_id=last_event_id, run_uuid=run_uuid, whole_run=whole_run)
    seq, frame = resume
    plan = plan_backlog(session=session, last_event_id=seq - 1, run_uuid=run_uuid, whole_run=whole_run)
    return replace(plan, frames_delivered=(seq, frame + 1)) if isinstance(plan, StreamPlan) else plan


def forwarded_for(headers: dict[bytes, bytes]) -> str:
    return headers.get(b"x-forwarded-for", b"").decode("latin-1")


def plan_backlog(
    *, session: Session, last_event_id: int | None, run_uuid: str | None, whole_run: bool = False
) -> StreamPlan | StreamRefusal:
    """What a stream of ``session`` covers from ``last_event_id``, with its stored backlog.
    ``whole_run`` (a run's own stream): read from the run's start and mark what the client
    has as delivered (a merged delta it has part of is split at ``last_event_id``)."""
    # Opening a stream is hot, and compiling querysets was most of its cost: the reads
    # here are lean (the fields the plan uses), most of them one SQL statement each.
    delivered = 0
    rows = None
    if run_uuid is not None:
        run = Run.objects.stream_target(session_id=session.pk, run_uuid=run_uuid)
        if run is None:
            return StreamRefusal(404, "not_found", "Not found.")
        if last_event_id is None:
            after, rows = backlog_from_start(run)
        else:
            after = last_event_id
        if whole_run and last_event_id is not None:
            delivered, after = last_event_id, min(events_before(run), last_event_id)
    elif last_event_id is not None:
        run = (  # the latest turn: a compaction since the client's event is no reply to wait for
            Run.objects.turns()
            .filter(session_id=session.pk)
            .only("id", "uuid", "status", "created_at", "session_id")
            .order_by("-created_at", "-id")
            .first()
        )
        if run is None:
            return StreamRefusal(204)
        after = last_event_id
    else:
        span = Run.objects.stream_span(session_id=session.pk)
        if span is None:
            return StreamRefusal(204)
        active, run = span  # the latest run closes the stream, so queued turns behind it follow on
        after = active.seq_before or 0
    if rows is None:
        rows = RunEvent.objects.stream_backlog(session_id=session.pk, after=after)
    backlog = backlog_events(rows, after=after, delivered=delivered)
    known = max(after, delivered)
    if run.is_finished and not any(e.type == FINISH and e.run_uuid == str(run.uuid) and e.seq > known for e in backlog):
        finished_seq = RunEvent.objects.filter(run=run, type=FINISH).aggregate(m=Max("seq"))["m"]
        # A finished run always stored its finish: none left means its events were purged.
        if finished_seq is None or finished_seq <= known:
            return StreamRefusal(204)
    return StreamPlan(
        session_uuid=str(session.uuid),
        after_seq=after,
        close_after_run=str(run.uuid),
        run_filter=str(run.uuid) if run_uuid is not None else None,
        backlog=backlog,
        delivered_seq=delivered,
    )


def backlog_from_start(run: Run) -> tuple[int, list[RunEvent]]:
    """``events_before(run)`` and the stored backlog after it, in one query."""
    rows = RunEvent.objects.stream_backlog(session_id=run.session_id, run_id=run.pk)
    if rows and rows[0].run_id == run.pk:
        return rows[0].seq - 1, rows
    # Nothing of the run is stored yet: its events, if any, are in Redis after the last.
    return (rows[-1].seq if rows else 0), []


def backlog_events(rows: list[RunEvent], *, after: int, delivered: int) -> list[StreamEvent]:
    """Stored rows (with ``run_uuid``) as the events a reader that has every id up to
    ``after`` lacks; a merged delta the client has up to ``delivered`` is split there."""
    backlog = []
    for row in rows:
        run_uuid = str(row.run_uuid)
        if row.first_seq <= delivered < row.seq:
            backlog.append(StreamEvent.from_row_through(row, run_uuid, delivered))
            backlog.append(StreamEvent.from_row(row, run_uuid, after=delivered))
        else:
            backlog.append(StreamEvent.from_row(row, run_uuid, after=after))
    return backlog


def events_before(run: Run) -> int:
    """The session's last event id before ``run``'s first: a run's own stream from its
    start reads from there (the events of other runs after it are filtered out)."""
    first = RunEvent.objects.filter(run_id=run.pk).order_by("seq").values_list("seq", flat=True).first()
    if first is not None:
        return first - 1
    # Nothing of the run is stored yet: its events, if any, are in Redis after these.
    return RunEvent.objects.filter(session_id=run.session_id).aggregate(m=Max("seq"))["m"] or 0


async def send_json_error(
    send: Any, refusal: StreamRefusal, cors: Headers | None = None, voice: ErrorVoice = error_body_for_status
) -> None:
    if refusal.status == 204:
        await send({"type": "http.response.start", "status": 204, "headers": [*(cors or [])]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps(voice(refusal.code, refusal.message, None, refusal.status)).encode()
    headers = [(b"content-type", b"application/json"), *(cors or [])]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="genie"'))
    if refusal.retry_after is not None:
        headers.append((b"retry-after", str(refusal.retry_after).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class ServerTransport:
    """The server's view of one client connection, where the server lets us see it.

    Daphne applies no backpressure: ``await send()`` returns at once and a stalled client's
    bytes pile up in Twisted's transport. Daphne's ``send`` is ``partial(handle_reply,
    protocol)``, so the transport's write buffer can be measured and the connection
    aborted (which frees that buffer at once). Other servers apply backpressure themselves.
    """

    transport: Any

    @classmethod
    def of(cls, send: Any) -> ServerTransport | None:
        try:
            from twisted.internet.abstract import FileDescriptor
        except ImportError:
            return None
        protocol = next(iter(getattr(send, "args", ())), None)
        transport = getattr(getattr(protocol, "channel", None), "transport", None)
        for _ in range(3):  # HTTPChannel → _GenericHTTPChannelProtocol → the TCP transport
            if transport is None or isinstance(transport, FileDescriptor):
                break
            transport = getattr(transport, "transport", None)
        return cls(transport) if isinstance(transport, FileDescriptor) else None

    def buffered_bytes(self) -> int:
        t = self.transport
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    def abort(self) -> None:
        self.transport.abortConnection()


class StreamRelay:
    """Sends one stream's events in order, exactly once, until its end.

    A client that falls behind by more than GENIE_SSE_MAX_BACKLOG_BYTES (held by the
    server) or GENIE_SSE_BUFFER_EVENTS (held by the relay) is disconnected: it resumes
    with Last-Event-ID and loses nothing.
    """

    def __init__(self, plan: StreamPlan, send: Any, wire: StreamFormat) -> None:
        self.plan = plan
        self.wire = wire
        self._send = send
        self._transport = ServerTransport.of(send)
        self.sent_seq = plan.after_seq
        self.done = False
        self.overflowed = False
        self.interrupted = False  # ended before its finish because events it owes are not readable yet

    async def send(self, message: dict) -> None:
        """Send, then wait while the server holds more than GENIE_SSE_MAX_BACKLOG_BYTES for
        this client (backpressure Daphne does not apply); abort a client stalled for
        longer than GENIE_SSE_STALL_TIMEOUT."""
        await self._send(message)
        if self._transport is None:
            return
        waited = 0.0
        while self._transport.buffered_bytes() > settings.GENIE_SSE_MAX_BACKLOG_BYTES:
            if waited >= settings.GENIE_SSE_STALL_TIMEOUT:
                logger.info(
                    "Disconnecting a stalled reader of session %s at id %s", self.plan.session_uuid, self.sent_seq
                )
                self.overflowed = True
                self._transport.abort()
                return
            await asyncio.sleep(0.02)
            waited += 0.02

    async def write(self, events: list[StreamEvent]) -> None:
        """Send the new events, joined into as few ASGI sends as possible (each send costs
        the same whatever its size), each at most SEND_CHUNK_BYTES."""
        parts: list[str] = []
        size = sent = 0
        for event in events:
            if event.seq <= self.sent_seq or self.overflowed:
                continue
            self.sent_seq = event.seq
            if self.plan.run_filter is not None and event.run_uuid != self.plan.run_filter:
                continue
            frame = self.wire.frame(event)
            if frame and event.seq > self.plan.delivered_seq:  # the format read it either way
                parts.append(frame)
                size += len(frame)
            if (event.type == FINISH and event.run_uuid == self.plan.close_after_run) or self.wire.ends_after(event):
                self.done = True
                break
            if size >= SEND_CHUNK_BYTES:
                await self.send({"type": "http.response.body", "body": "".join(parts).encode(), "more_body": True})
                sent += len(parts)
                parts, size = [], 0
        if parts and not self.overflowed:
            await self.send({"type": "http.response.body", "body": "".join(parts).encode(), "more_body": True})
            sent += len(parts)
        relayed_events.add(sent)  # in memory: flushed to Redis when the stream ends and on the fan-out's tick

    async def catch_up(self) -> None:
        await self.write(self.plan.backlog)
        if self.done or self.overflowed:
            return
        start = max(self.sent_seq, self.plan.after_seq) + 1
        try:
            entries = await async_redis().xrange(stream_key(self.plan.session_uuid), min=f"{start}-0")
        except (aioredis.RedisError, OSError):
            # A pooled connection that died with a Redis restart: PostgreSQL has the rest
            # (up to the last batch); the live feed and its gap check cover the tail.
            await self.write(await load_stored_events(self.plan.session_uuid, self.sent_seq))
            return
        events = [StreamEvent.from_stream_entry(entry_id, fields) for entry_id, fields in entries]
        if events and events[0].seq > self.sent_seq + 1 and not await self.fill_gap(events[0].seq):
            return
        await self.write(events)

    async def fill_gap(self, next_seq: int) -> bool:
        """Redis lacks the events before ``next_seq`` (it restarted, and came back empty):
        take them from PostgreSQL, waiting a few flush intervals for the worker's batch
        that holds them. Returns False, and marks the stream interrupted, when they do not
        arrive: the stream must end there rather than skip them (the client resumes with
        Last-Event-ID and gets them from PostgreSQL)."""
        deadline = time.monotonic() + max(3 * settings.GENIE_EVENT_FLUSH_INTERVAL, 1.0)
        while True:
            await self.write(await load_stored_events(self.plan.session_uuid, self.sent_seq))
            if self.sent_seq >= next_seq - 1 or self.done or self.overflowed:
                return True
            if time.monotonic() >= deadline:
                logger.info(
                    "Stream of %s interrupted: events %s.. are not stored yet",
                    self.plan.session_uuid,
                    self.sent_seq + 1,
                )
                self.interrupted = True
                return False
            await asyncio.sleep(min(settings.GENIE_EVENT_FLUSH_INTERVAL / 2, 0.25) or 0.05)

    async def tail(self, subscriber: Subscriber) -> None:
        deadline = time.monotonic() + settings.GENIE_SSE_MAX_DURATION
        while not self.done and not self.interrupted:
            if subscriber.closed or subscriber.overflowed or self.overflowed or time.monotonic() > deadline:
                logger.info(
                    "Stream of %s ends at id %s (closed=%s, overflowed=%s)",
                    self.plan.session_uuid,
                    self.sent_seq,
                    subscriber.closed,
                    subscriber.overflowed or self.overflowed,
                )
                return
            await subscriber.wait()
            events = subscriber.take()
            if events:
                subscriber.heartbeat_due = False
                if events[0].seq > self.sent_seq + 1 and not await self.fill_gap(events[0].seq):
                    return
                await self.write(events)
            elif subscriber.heartbeat_due:
                subscriber.heartbeat_due = False
                # A quiet stream looks in PostgreSQL once per heartbeat: a run whose worker
                # died after its end was committed, before publishing it, stored its finish
                # there only (one indexed query, only when nothing came for a while).
                await self.write(await load_stored_events(self.plan.session_uuid, self.sent_seq))
                if not self.done:
                    await self.send({"type": "http.response.body", "body": self.wire.heartbeat, "more_body": True})


@database_sync_to_async
def load_stored_events(session_uuid: str, after: int) -> list[StreamEvent]:
    """A gap in the live feed (Redis restarted mid-run): fill it from PostgreSQL."""
    rows = RunEvent.objects.filter(session__uuid=session_uuid, seq__gt=after).select_related("run").order_by("seq")
    return [StreamEvent.from_row(row, str(row.run.uuid), after=after) for row in rows]


async def watch_disconnect(receive: Any, subscriber: Subscriber) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            subscriber.close()
            return


async def relay_stream(
    plan: StreamPlan, receive: Any, send: Any, headers: Headers | None = None, wire: StreamFormat | None = None
) -> None:
    """Subscribe first, then replay the backlog, then tail: nothing lost, nothing twice.
    ``headers`` go with the format's own (CORS, a turn's ``Location``)."""
    wire = wire or UIMessageFormat()
    fanout = live_fanout()
    channel = channel_name(plan.session_uuid)
    subscriber = Subscriber(settings.GENIE_SSE_BUFFER_EVENTS)
    relay = StreamRelay(plan, send, wire)
    watcher = asyncio.get_running_loop().create_task(watch_disconnect(receive, subscriber))
    started = False
    try:
        try:
            await fanout.add(channel, subscriber)
        except (aioredis.RedisError, OSError, TimeoutError):
            logger.warning("Redis unavailable: stream of %s serves stored events only", plan.session_uuid)
            subscriber.close()
        await send({"type": "http.response.start", "status": 200, "headers": [*wire.headers(), *(headers or [])]})
        started = True
        await send({"type": "http.response.body", "body": wire.preamble(), "more_body": True})
        if subscriber.closed:
            await relay.write(plan.backlog)
        else:
            await relay.catch_up()
            await relay.tail(subscriber)
    finally:
        watcher.cancel()
        await fanout.remove(channel, subscriber)
        await relayed_events.flush(async_redis())  # before the slot: a closed stream's events are counted
        await release_slot(*plan.slot)
        if started:
            # Ended before its finish (Redis went away, a gap not stored yet, the stream's
            # time limit): the format says so, so that a client resumes with Last-Event-ID.
            tail = b"" if relay.overflowed else wire.epilogue(complete=relay.done)
            try:
                await send({"type": "http.response.body", "body": tail, "more_body": False})
            except Exception:
                logger.debug("closing a gone stream", exc_info=True)


class StreamApp:
    """ASGI app for the stream URLs (``run_uuid`` in the route selects a run's own
    stream; ``handle``, in an adapter's route, the agent the session must be of), written
    in ``wire``'s protocol, its errors in ``error_voice``."""

    def __init__(
        self, wire: type[StreamFormat] = UIMessageFormat, error_voice: ErrorVoice = error_body_for_status
    ) -> None:
        self.wire = wire
        self.error_voice = error_voice
        # Not thread-sensitive: streams open in parallel on the executor's threads instead
        # of queueing behind every other sync call of the process on one thread. Wrapped
        # once: building the wrapper per stream was a tenth of the event loop's share.
        self._prepare = database_sync_to_async(self.prepare, thread_sensitive=False)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        cors = await asgi_cors(scope)  # the API's CORS rule (genie.cors), at this edge
        if cors.preflight:
            await send_json_error(send, StreamRefusal(204), cors.headers)
            return
        if scope["method"] not in {"GET", "HEAD"}:
            refusal = StreamRefusal(405, "method_not_allowed", f'Method "{scope["method"]}" not allowed.')
            await send_json_error(send, refusal, cors.headers, self.error_voice)
            return
        query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
        if nul.contains_nul([scope["url_route"]["kwargs"], query]):  # not a text PostgreSQL can hold
            await send_json_error(send, StreamRefusal(400, nul.CODE, nul.MESSAGE), cors.headers, self.error_voice)
            return
        plan, wire = await self._prepare(scope)
        if isinstance(plan, StreamRefusal):
            await send_json_error(send, plan, cors.headers, self.error_voice)
            return
        await relay_stream(plan, receive, send, cors.headers, wire)

    def prepare(self, scope: dict) -> tuple[StreamPlan | StreamRefusal, StreamFormat]:
        """The stream's plan (``plan_stream``) and its format, before the first byte (in a
        thread: this is where the database is read)."""
        kwargs = scope["url_route"]["kwargs"]
        run_uuid = kwargs.get("run_uuid")
        plan = plan_stream(
            headers=dict(scope["headers"]),
            query=parse_qs(scope.get("query_string", b"").decode()),
            session_uuid=str(kwargs["session_uuid"]),
            run_uuid=str(run_uuid) if run_uuid else None,
            client=scope.get("client"),
            agent_handle=kwargs.get("handle"),
            whole_run=self.wire.reads_whole_run,
        )
        wire = self.wire()
        if isinstance(plan, StreamPlan) and plan.frames_delivered[1]:
            wire.resume_from_frame(*plan.frames_delivered)
        return plan, wire


stream_app = StreamApp()
