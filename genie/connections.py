"""The process's connections to the shared services the apps use: the Redis client, the
check that Redis is up before a write, and giving the database connection back between
the few queries of a long task.

Lives in the project package so that every app, and the health check, share one client
without ``genie`` importing an app."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from functools import cache, cached_property
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.db import DatabaseError, InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")


@cache
def redis_client() -> redis.Redis:
    """The process's sync client (thread-safe connection pool)."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


def require_redis() -> None:
    """Refuse a write up front when Redis is down, so nothing is half written (a run whose
    task cannot be enqueued). Raises ``RedisUnavailable`` (503 ``redis_unavailable``)."""
    # Imported here: genie.exceptions loads DRF's views, whose settings load genie.auth,
    # which needs this module's client.
    from genie.exceptions import RedisUnavailable

    try:
        redis_client().ping()
    except redis.RedisError as exc:
        raise RedisUnavailable() from exc


def release_connection() -> None:
    """Give this thread's database connection back to the pool between the few queries of
    a streaming turn: a turn lasts minutes, a worker runs dozens at once, and the pool is
    sized for the queries, not for the turns. Inside a transaction it does nothing."""
    if not connection.in_atomic_block:
        connection.close()


def retry_when_disconnected(operation: Callable[[], T], *, what: str) -> T:
    """``operation()``, run again when the database connection is lost under it (a
    PostgreSQL restart, a terminated backend: ``OperationalError``/``InterfaceError``): the
    dead connection is dropped and the operation retried with a growing pause (0.1 s to
    1 s) for up to GENIE_DB_RECONNECT_WAIT seconds, so that a streaming turn rides out a
    restart of a few seconds instead of dying. ``operation`` must be safe to repeat (an
    idempotent write, or a transaction of its own that failed as a whole). Inside an outer
    transaction nothing is retried (its earlier writes are lost): the error goes up."""
    deadline = time.monotonic() + settings.GENIE_DB_RECONNECT_WAIT
    pause = 0.1
    while True:
        try:
            return operation()
        except (OperationalError, InterfaceError) as exc:
            if connection.in_atomic_block or time.monotonic() + pause > deadline:
                raise
            logger.warning("Database connection lost during %s (%s); retrying in %.1f s", what, exc, pause)
            with contextlib.suppress(DatabaseError):
                connection.close()  # a broken connection goes back to the pool, which drops it
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


class RedisCache(DjangoRedisCache):
    """Django's Redis cache (the rate limits' counters, CORS origins) on one client, so one
    connection pool, per process.

    Django's cache handler holds a cache instance per thread and, under ASGI, per request
    context, and each instance built a connection pool of its own: every request Daphne
    served opened a new Redis connection and shook hands on it (redis-py's handshake reads
    its own version from the package metadata each time), ~1 ms of CPU for a stream's open
    (Django ticket #35651). ``OPTIONS`` values must be hashable (they key the shared client).
    """

    @cached_property
    def _cache(self) -> RedisCacheClient:
        return shared_cache_client(self._class, tuple(self._servers), frozenset(self._options.items()))


@cache
def shared_cache_client(
    client_class: type[RedisCacheClient], servers: tuple[str, ...], options: frozenset[tuple[str, Any]]
) -> RedisCacheClient:
    return client_class(list(servers), **dict(options))
