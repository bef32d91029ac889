"""Live fan-out of run events to the SSE streams of one ASGI process.

One Redis pub/sub connection per process serves every open stream (a blocking read per
client does not scale: see STREAMING-NOTES). It is a bare asyncio protocol parsed by
hiredis, not redis-py's PubSub: per relayed event that is the cheapest path measured
here. Each stream owns a ``Subscriber`` with a bounded buffer; a stream whose client falls
too far behind is marked ``overflowed`` and closed, and the client resumes by
Last-Event-ID (everything is stored).

A process-wide ticker wakes every stream once per GENIE_SSE_HEARTBEAT, so a quiet stream
sends its heartbeat and an expired one ends, without a timer per stream per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from django.conf import settings
from redis.connection import parse_url

from runs.events import StreamEvent

logger = logging.getLogger(__name__)

EVENTS_RELAYED_KEY = "genie:metrics:events_relayed"


class Subscriber:
    """One stream's buffer of live events, bounded by GENIE_SSE_BUFFER_EVENTS."""

    __slots__ = ("closed", "events", "heartbeat_due", "limit", "overflowed", "quiet", "waiter")

    def __init__(self, limit: int) -> None:
        self.events: deque[StreamEvent] = deque()
        self.limit = limit
        self.overflowed = False
        self.closed = False
        self.quiet = True  # nothing arrived since the last tick
        self.heartbeat_due = False
        self.waiter: asyncio.Future | None = None

    def push(self, event: StreamEvent) -> None:
        if len(self.events) >= self.limit:
            self.overflowed = True
        else:
            self.events.append(event)
        self.quiet = False
        self._wake()

    def tick(self) -> None:
        """A heartbeat interval passed: due a heartbeat if it was quiet throughout."""
        if self.quiet:
            self.heartbeat_due = True
        self.quiet = True
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self) -> None:
        """Until an event, a tick or the end arrives."""
        if self.events or self.closed or self.heartbeat_due:
            return
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take(self) -> list[StreamEvent]:
        events = list(self.events)
        self.events.clear()
        return events


def resp_command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class PubSubProtocol(asyncio.Protocol):
    """A RESP connection in subscribe mode: hands each parsed reply to ``on_reply``."""

    def __init__(self, on_reply: Callable[[Any], None], on_lost: Callable[[], None]) -> None:
        self._parser = hiredis.Reader()
        self._on_reply = on_reply
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while (reply := self._parser.gets()) is not False:
            self._on_reply(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()

    def command(self, *args: str) -> None:
        self.transport.write(resp_command(*args))


class LiveFanout:
    """Process-wide: channel → subscribers, fed by one pub/sub connection."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._confirmations: dict[str, asyncio.Future] = {}
        # SUBSCRIBE commands sent per channel whose reply has not come back: a channel
        # unsubscribed and subscribed again in quick succession gets the reply of its first
        # SUBSCRIBE before Redis has even seen the UNSUBSCRIBE; only the last reply confirms.
        self._unanswered: dict[str, int] = {}
        self._protocol: PubSubProtocol | None = None
        self._ticker: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    @property
    def stream_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    async def _connect(self) -> PubSubProtocol:
        if self._protocol is not None:
            return self._protocol
        options = parse_url(settings.REDIS_URL)
        loop = asyncio.get_running_loop()
        protocol = PubSubProtocol(self._dispatch, self._lost)
        if "path" in options:
            connect = loop.create_unix_connection(lambda: protocol, options["path"])
        else:
            connect = loop.create_connection(
                lambda: protocol, options.get("host", "localhost"), options.get("port", 6379)
            )
        await asyncio.wait_for(connect, timeout=2)
        if options.get("password"):
            protocol.command("AUTH", *filter(None, (options.get("username"), options["password"])))
        self._protocol = protocol
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._tick())
        return protocol

    async def add(self, channel: str, subscriber: Subscriber) -> None:
        """Register ``subscriber`` and return once Redis confirmed the subscription, so
        anything published afterwards reaches it."""
        async with self._lock:
            protocol = await self._connect()
            subs = self._subscribers.setdefault(channel, set())
            subs.add(subscriber)
            confirmation = self._confirmations.get(channel)
            if confirmation is None:
                confirmation = asyncio.get_running_loop().create_future()
                self._confirmations[channel] = confirmation
                self._unanswered[channel] = self._unanswered.get(channel, 0) + 1
                protocol.command("SUBSCRIBE", channel)
        try:
            await asyncio.wait_for(asyncio.shield(confirmation), timeout=5)
        except BaseException:
            await self.remove(channel, subscriber)
            raise

    async def remove(self, channel: str, subscriber: Subscriber) -> None:
        async with self._lock:
            subs = self._subscribers.get(channel)
            if subs is None:
                return
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[channel]
                self._confirmations.pop(channel, None)
                if self._protocol is not None:
                    self._protocol.command("UNSUBSCRIBE", channel)

    def _dispatch(self, reply: Any) -> None:
        if isinstance(reply, hiredis.ReplyError):
            logger.warning("Live fan-out: Redis answered %s", reply)
            self._protocol.transport.close()
            return
        if not isinstance(reply, list):
            return  # +OK of AUTH
        kind = reply[0]
        if kind == b"message":
            subs = self._subscribers.get(reply[1].decode())
            if subs:
                event = StreamEvent.unpack(reply[2])  # parsed once for all its streams
                for sub in subs:
                    sub.push(event)
        elif kind == b"subscribe":
            channel = reply[1].decode()
            left = self._unanswered.get(channel, 1) - 1
            if left > 0:
                self._unanswered[channel] = left
                return  # an earlier SUBSCRIBE's reply: an UNSUBSCRIBE may still follow it
            self._unanswered.pop(channel, None)
            confirmation = self._confirmations.get(channel)
            if confirmation is not None and not confirmation.done():
                confirmation.set_result(True)

    def _lost(self) -> None:
        """Redis went away: end every stream cleanly (clients resume by Last-Event-ID);
        the next stream opens a fresh connection."""
        if self._subscribers:
            logger.warning("Live fan-out lost Redis; closing %s streams", self.stream_count)
        self._protocol = None
        for subs in self._subscribers.values():
            for sub in subs:
                sub.close()
        for confirmation in self._confirmations.values():
            if not confirmation.done():
                confirmation.set_exception(ConnectionError("Redis unavailable"))
        self._subscribers.clear()
        self._confirmations.clear()
        self._unanswered.clear()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(settings.GENIE_SSE_HEARTBEAT)
            for subs in list(self._subscribers.values()):
                for sub in subs:
                    sub.tick()
            if self._protocol is not None:
                self._protocol.command("PING")  # finds a dead connection while all is quiet
            await relayed_events.flush(async_redis())  # the events of streams still open


class RelayedEvents:
    """Events this process relayed to clients since it last added them to the deployment's
    counter in Redis (``genie_events_relayed_total``, runs.metrics). Counting is a plain
    addition on the event loop's thread; ``flush`` (a stream's end, the heartbeat tick) is
    one INCRBY, never one per event."""

    def __init__(self) -> None:
        self.pending = 0

    def add(self, count: int) -> None:
        self.pending += count

    async def flush(self, client: aioredis.Redis) -> None:
        count, self.pending = self.pending, 0
        if not count:
            return
        try:
            await client.incrby(EVENTS_RELAYED_KEY, count)
        except (aioredis.RedisError, OSError):
            self.pending += count  # the next flush carries them


relayed_events = RelayedEvents()


_fanouts: dict[int, LiveFanout] = {}
_clients: dict[int, aioredis.Redis] = {}


def live_fanout() -> LiveFanout:
    """The fan-out of the running event loop (one per process under Daphne)."""
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _fanouts:
        _fanouts[loop_id] = LiveFanout()
    return _fanouts[loop_id]


def async_redis() -> aioredis.Redis:
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _clients:
        _clients[loop_id] = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    return _clients[loop_id]
