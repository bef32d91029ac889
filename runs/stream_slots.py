"""Open streams per credential, capped at GENIE_MAX_STREAMS_PER_KEY across every ASGI
process: a Redis sorted set per credential whose members are the open streams, scored
by when each would end at the latest (GENIE_SSE_MAX_DURATION), so the slots of a process
that died without releasing them expire by themselves."""

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

# Drop the expired slots, refuse at the cap, else take one: one atomic command.
TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
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
    """A slot for one more open stream: its id ('' when uncapped or Redis cannot count),
    or None when the credential is at its cap."""
    cap = settings.GENIE_MAX_STREAMS_PER_KEY
    if cap <= 0:
        return ""
    now = time.time()
    lifetime = settings.GENIE_SSE_MAX_DURATION + 60
    slot = uuid.uuid4().hex
    try:
        taken = take_slot_script()(
            keys=[slots_key(ident)], args=[now, cap, now + lifetime, slot, int(lifetime)], client=redis_client()
        )
    except redis.RedisError:
        logger.warning("Stream slots not counted: Redis is unavailable")
        return ""
    return slot if taken else None


async def release_slot(ident: str, slot: str) -> None:
    if slot:
        with contextlib.suppress(aioredis.RedisError, OSError):
            await async_redis().zrem(slots_key(ident), slot)


def release_slot_now(ident: str, slot: str) -> None:
    """``release_slot`` for sync code: a stream that was never opened gives its slot back."""
    if slot:
        with contextlib.suppress(redis.RedisError):
            redis_client().zrem(slots_key(ident), slot)
