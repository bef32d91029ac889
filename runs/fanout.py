"""Live fan-out of run events to the SSE streams of one ASGI process.

One Redis pub/sub connection per process serves every open stream (a blocking read per
client does not scale: see STREAMING-NOTES). Each stream owns a ``Subscriber`` with a
bounded buffer; a stream whose client falls too far behind is marked ``overflowed`` and
closed, and the client resumes by Last-Event-ID (everything is stored).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import redis.asyncio as aioredis
from django.conf import settings

from runs.events import StreamEvent

logger = logging.getLogger(__name__)

KEEPALIVE_CHANNEL = "genie:live:keepalive"  # keeps the pub/sub connection subscribed


class Subscriber:
    """One stream's buffer of live events, bounded by GENIE_SSE_BUFFER_EVENTS."""

    __slots__ = ("closed", "events", "limit", "overflowed", "wakeup")

    def __init__(self, limit: int) -> None:
        self.events: deque[StreamEvent] = deque()
        self.wakeup = asyncio.Event()
        self.limit = limit
        self.overflowed = False
        self.closed = False

    def push(self, event: StreamEvent) -> None:
        if len(self.events) >= self.limit:
            self.overflowed = True
        else:
            self.events.append(event)
        self.wakeup.set()

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


class LiveFanout:
    """Process-wide: channel → subscribers, fed by one reader task."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._confirmations: dict[str, asyncio.Future] = {}
        self._client: aioredis.Redis | None = None
        self._pubsub: aioredis.client.PubSub | None = None
        self._reader: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    @property
    def stream_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    async def _ensure_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            return
        self._client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(KEEPALIVE_CHANNEL)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def add(self, channel: str, subscriber: Subscriber) -> None:
        """Register ``subscriber`` and return once Redis confirmed the subscription, so
        anything published afterwards reaches it."""
        async with self._lock:
            await self._ensure_reader()
            subs = self._subscribers.setdefault(channel, set())
            subs.add(subscriber)
            confirmation = self._confirmations.get(channel)
            if len(subs) == 1 and confirmation is None:
                confirmation = asyncio.get_running_loop().create_future()
                self._confirmations[channel] = confirmation
                await self._pubsub.subscribe(channel)
        if confirmation is not None:
            await asyncio.wait_for(asyncio.shield(confirmation), timeout=5)

    async def remove(self, channel: str, subscriber: Subscriber) -> None:
        async with self._lock:
            subs = self._subscribers.get(channel)
            if subs is None:
                return
            subs.discard(subscriber)
            if not subs:
                del self._subscribers[channel]
                self._confirmations.pop(channel, None)
                if self._pubsub is not None and self._reader is not None and not self._reader.done():
                    try:
                        await self._pubsub.unsubscribe(channel)
                    except (aioredis.RedisError, OSError):
                        logger.debug("unsubscribe failed", exc_info=True)

    async def _read(self) -> None:
        pubsub = self._pubsub
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    self._dispatch(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Redis went away: end every stream cleanly (clients resume by Last-Event-ID);
            # the next stream opens a fresh connection.
            logger.warning("Live fan-out lost Redis; closing %s streams", self.stream_count, exc_info=True)
            self._close_all()
            try:
                await pubsub.aclose()
            except Exception:
                logger.debug("closing pubsub failed", exc_info=True)

    def _dispatch(self, message: dict) -> None:
        channel = message["channel"].decode()
        if message["type"] == "message":
            subs = self._subscribers.get(channel)
            if subs:
                event = StreamEvent.unpack(message["data"])  # parsed once for all its streams
                for sub in subs:
                    sub.push(event)
        elif message["type"] == "subscribe":
            confirmation = self._confirmations.get(channel)
            if confirmation is not None and not confirmation.done():
                confirmation.set_result(True)

    def _close_all(self) -> None:
        for subs in self._subscribers.values():
            for sub in subs:
                sub.close()
        for confirmation in self._confirmations.values():
            if not confirmation.done():
                confirmation.set_exception(ConnectionError("Redis unavailable"))
        self._subscribers.clear()
        self._confirmations.clear()


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
