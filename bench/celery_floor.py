"""The floor of a turn's queue hop: a Celery task that does nothing, published and
started through the same broker, with the settings Genie's workers run (threads pool,
late acks, prefetch 1, no gossip, mingle or heartbeats), on a queue of its own. The time
from ``delay()`` to the task's first line is what any durable, queued turn pays before
the worker can claim it; Genie's "queued → started" adds the POST's commit and the claim.

Run by ``python -m bench`` (``--only ttft``): the bench starts this module's worker
(``celery -A bench.celery_floor worker``) from ``celery_hops``.
"""

from __future__ import annotations

import os
import sys
import time
from functools import cache
from pathlib import Path

import redis
from celery import Celery

QUEUE = "bench-celery-floor"
REPLIES = "bench:celery-floor:replies"
BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")

app = Celery("bench-celery-floor", broker=BROKER_URL)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.celery_floor.hop")
def hop(published_at: float) -> None:
    """Report how long after its publishing this task started (same machine, same clock)."""
    replies().rpush(REPLIES, repr(time.time() - published_at))


@cache
def replies() -> redis.Redis:
    return redis.Redis.from_url(BROKER_URL)


def celery_hops(env: dict[str, str], log: Path, samples: int) -> list[float]:
    """Publish ``samples`` no-op tasks one at a time (each after the last one started) to a
    worker started here; each one's publish → start, in seconds."""
    from tests.processes import LiveProcess, wait_for

    worker = LiveProcess(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_floor",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "50",
            "--queues",
            QUEUE,
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"floor{os.getpid()}@%h",
        ],
        {**env, "REDIS_URL": BROKER_URL},
        log,
    ).start()
    client = replies()
    try:
        client.delete(REPLIES)
        hop.delay(time.time())  # the worker answers once it consumes
        wait_for(lambda: client.llen(REPLIES) > 0, 60, "the Celery floor worker")
        client.delete(REPLIES)
        hops = []
        for _ in range(samples):
            hop.delay(time.time())
            reply = client.blpop([REPLIES], timeout=10)
            if reply is None:
                break
            hops.append(float(reply[1]))
            time.sleep(0.02)  # one at a time, as turns arrive, not a burst
    finally:
        worker.stop()
        client.delete(REPLIES)
    return hops
