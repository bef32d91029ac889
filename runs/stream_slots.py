"""Open streams per credential, capped at GENIE_MAX_STREAMS_PER_KEY across every ASGI
process: a Redis sorted set per credential whose members are the open streams, scored
by when each would end at the latest (GENIE_SSE_MAX_DURATION), so the slots of a process
that died without releasing them expire by themselves. Every slot is also a member of one
set of all open streams (``OPEN_STREAMS_KEY``), which ``/metrics`` counts: the figure of
the whole deployment, whichever Daphne process answers the scrape."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from functools import cache
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from genie.auth import Caller
from genie.connections import redis_client
from runs.fanout import async_redis

logger = logging.getLogger(__name__)

OPEN_STREAMS_KEY = "genie:streams:open"

# Drop the expired slots, refuse at the cap (0: none), else take one, in the credential's
# set and in the set of all open streams: one atomic command.
TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""


@cache
def take_slot_script() -> Any:
    return redis_client().register_script(TAKE_SLOT)


def credential_ident(caller: Caller, ip: str) -> str:
    if caller.token is None:
        return f"user:{caller.user.pk}"
    if caller.is_publishable:  # one key serves every visitor of a site: count per visitor
        return f"token:{caller.token.pk}:ip:{ip}"
    return f"token:{caller.token.pk}"


def slots_key(ident: str) -> str:
    return f"genie:streams:{ident}"


def take_slot(ident: str) -> str | None:
    """A slot for one more open stream: its id ('' when Redis cannot count), or None
    when the credential is at its cap. Uncapped streams take a slot too: they are counted
    in ``OPEN_STREAMS_KEY``. One Redis round trip, when the stream opens."""
    cap = max(settings.GENIE_MAX_STREAMS_PER_KEY, 0)
    now = time.time()
    lifetime = settings.GENIE_SSE_MAX_DURATION + 60
    slot = uuid.uuid4().hex
    try:
        taken = take_slot_script()(
            keys=[slots_key(ident), OPEN_STREAMS_KEY],
            args=[now, cap, now + lifetime, slot, int(lifetime)],
            client=redis_client(),
        )
    except redis.RedisError:
        logger.warning("Stream slots not counted: Redis is unavailable")
        return ""
    return slot if taken else None


async def release_slot(ident: str, slot: str) -> None:
    if slot:
        with contextlib.suppress(aioredis.RedisError, OSError):
            async with async_redis().pipeline(transaction=False) as pipe:
                await pipe.zrem(slots_key(ident), slot).zrem(OPEN_STREAMS_KEY, slot).execute()


def release_slot_now(ident: str, slot: str) -> None:
    """``release_slot`` for sync code: a stream that was never opened gives its slot back."""
    if slot:
        with contextlib.suppress(redis.RedisError):
            pipe = redis_client().pipeline(transaction=False)
            pipe.zrem(slots_key(ident), slot).zrem(OPEN_STREAMS_KEY, slot).execute()


def count_open_streams() -> int:
    """Streams open now across every ASGI process (the expired slots of dead processes
    left out)."""
    return redis_client().zcount(OPEN_STREAMS_KEY, time.time(), "+inf")
