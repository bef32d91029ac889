"""The runs' figures for ``/metrics`` (Prometheus), correct across every process.

Each figure is read, at scrape time, from where the whole deployment keeps it, so any
Daphne process answers the scrape for all of them (nothing lives in one process's memory
or on one machine's disk):

- runs by status: PostgreSQL (one ``GROUP BY`` over the runs' status index);
- queue depth: the Celery queue's length in the broker (Redis ``LLEN``);
- open streams: the set of open stream slots in Redis (``runs.stream_slots``), which
  every stream takes when it opens and gives back when it ends (a dead process's slots
  expire);
- events relayed: a Redis counter that each relaying process adds its own count to when
  a stream ends and on the fan-out's heartbeat tick: never per event, so the token path
  makes no extra round trip; an open stream's events show within GENIE_SSE_HEARTBEAT;
- time to first token and turn duration: histograms in Redis, recorded once per run when
  it ends (``record_run_end``, after the end's commit), from the run's stored times.

A Redis that lost its data restarts the counters and histograms at zero, which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from functools import cache

import redis
from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from genie import celery_app
from genie.connections import redis_client
from runs.fanout import EVENTS_RELAYED_KEY
from runs.models import Run
from runs.stream_slots import count_open_streams

logger = logging.getLogger(__name__)

TTFT_KEY = "genie:metrics:time_to_first_token"
DURATION_KEY = "genie:metrics:run_duration:{status}"
# Seconds. Time to first token includes the queue (from the POST); a turn's duration
# includes its queue and any pause for an approval or a client tool.
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def bucket_field(seconds: float, bounds: Sequence[float]) -> str:
    """The hash field of the first bucket ``seconds`` falls in (counts are stored per
    bucket and made cumulative when scraped)."""
    return next((repr(bound) for bound in bounds if seconds <= bound), "+Inf")


def record_run_end(run: Run) -> None:
    """Add an ended run to the histograms: one Redis round trip. Its times are the stored
    ones (``created_at``, ``first_token_at``, ``finished_at``)."""
    if run.finished_at is None:
        return
    pipe = redis_client().pipeline(transaction=False)
    duration = max((run.finished_at - run.created_at).total_seconds(), 0.0)
    key = DURATION_KEY.format(status=run.status)
    pipe.hincrby(key, bucket_field(duration, DURATION_BUCKETS), 1).hincrbyfloat(key, "sum", duration)
    if run.first_token_at is not None:
        ttft = max((run.first_token_at - run.created_at).total_seconds(), 0.0)
        pipe.hincrby(TTFT_KEY, bucket_field(ttft, TTFT_BUCKETS), 1).hincrbyfloat(TTFT_KEY, "sum", ttft)
    try:
        pipe.execute()
    except redis.RedisError:
        logger.warning("Run %s not counted in the metrics: Redis is unavailable", run.uuid)


def histogram_buckets(stored: dict[bytes, bytes], bounds: Sequence[float]) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` pairs and the sum, from a hash of per-bucket counts."""
    counts = {key.decode(): float(value) for key, value in stored.items()}
    buckets, total = [], 0.0
    for bound in (*bounds, math.inf):
        field = "+Inf" if bound == math.inf else repr(bound)
        total += counts.get(field, 0.0)
        buckets.append((field, total))
    return buckets, counts.get("sum", 0.0)


@cache
def broker_client() -> redis.Redis | None:
    """The Celery broker's Redis (the app's own client when they are the same); None for a
    broker that is not Redis."""
    url = settings.CELERY_BROKER_URL
    if url == settings.REDIS_URL:
        return redis_client()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return None


class RunsCollector:
    """The runs' figures, read when ``/metrics`` is scraped. Costs: one PostgreSQL query
    and two Redis round trips (one to the broker when it is another Redis)."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "genie_metrics_source_up",
            "Whether the store a group of figures is read from answered this scrape (1) or not (0).",
            labels=["source"],
        )
        try:
            yield self.runs_by_status()
            up.add_metric(["postgresql"], 1)
        except DatabaseError:
            logger.warning("Metrics: PostgreSQL did not answer", exc_info=True)
            up.add_metric(["postgresql"], 0)
        try:
            yield from self.redis_figures()
            up.add_metric(["redis"], 1)
        except (redis.RedisError, OSError):
            logger.warning("Metrics: Redis did not answer", exc_info=True)
            up.add_metric(["redis"], 0)
        yield up

    def runs_by_status(self) -> Metric:
        counts = dict(Run.objects.order_by().values_list("status").annotate(n=Count("id")))
        family = GaugeMetricFamily("genie_runs", "Runs stored, by status.", labels=["status"])
        for status in Run.Status.values:
            family.add_metric([status], counts.get(status, 0))
        return family

    def redis_figures(self) -> list[Metric]:
        """Every Redis figure, or an error before any is given."""
        statuses = [str(status) for status in Run.FINAL_STATUSES]
        pipe = redis_client().pipeline(transaction=False)
        pipe.get(EVENTS_RELAYED_KEY).hgetall(TTFT_KEY)
        for status in statuses:
            pipe.hgetall(DURATION_KEY.format(status=status))
        relayed, ttft, *durations = pipe.execute()
        figures: list[Metric] = [
            GaugeMetricFamily(
                "genie_open_streams", "SSE streams open now, across every Daphne process.", value=count_open_streams()
            ),
            CounterMetricFamily(
                "genie_events_relayed", "Events sent to stream clients (each client counts).", value=int(relayed or 0)
            ),
        ]
        buckets, total = histogram_buckets(ttft, TTFT_BUCKETS)
        figures.append(
            HistogramMetricFamily(
                "genie_run_time_to_first_token_seconds",
                "From a turn's request (its run created) to its first token, for runs that produced one.",
                buckets=buckets,
                sum_value=total,
            )
        )
        duration = HistogramMetricFamily(
            "genie_run_duration_seconds",
            "From a turn's request to its end (queue and pauses included), by final status.",
            labels=["status"],
        )
        for status, stored in zip(statuses, durations, strict=True):
            buckets, total = histogram_buckets(stored, DURATION_BUCKETS)
            duration.add_metric([status], buckets, total)
        figures.append(duration)
        queue = self.queue_depth()
        if queue is not None:
            figures.append(queue)
        return figures

    def queue_depth(self) -> Metric | None:
        client = broker_client()
        if client is None:
            return None
        family = GaugeMetricFamily(
            "genie_queue_depth", "Tasks waiting in a Celery queue (not yet taken by a worker).", labels=["queue"]
        )
        for name in (celery_app.conf.task_default_queue, settings.GENIE_TITLES_QUEUE):  # turns, then titles
            family.add_metric([name], client.llen(name))
        return family
