"""The leases of the runs a worker process executes, renewed by one thread of that process.

A running run's lease (``Run.lease_owner``, ``Run.lease_expires_at``) says its worker is
alive; the sweeper (``runs.recovery``) takes a run whose lease expired from its worker.
The turn's own renewal rides on its tokens (``runs.loop.StopWatch``), so a model that is
silent for longer than GENIE_RUN_LEASE (a reasoning model thinking, a local model loading
its weights, a slow tool) would let the lease expire although its worker is alive: the
run would be re-queued and answered twice. The ``LeaseKeeper`` renews every held lease
every third of GENIE_RUN_LEASE whatever the turns are doing, in one UPDATE, and notes the
runs whose lease this process no longer holds (taken over by another worker, or ended by
someone else): their turns stop at their next check without writing (``LeaseLost``).

It runs in Celery worker processes only (started when the worker is ready,
``genie.celery``): a turn executed in-process (tests, eager tasks) renews through its
tokens as before.
"""

from __future__ import annotations

import logging
import operator
import threading
from datetime import timedelta
from functools import reduce

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from genie.connections import release_connection
from runs.models import Run

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The run's lease is no longer this worker's: another worker answers it (or it was
    ended); this one stops without writing another event."""


class LeaseKeeper:
    """The leases one process holds: ``hold`` when a turn claims its run, ``release``
    when the turn is done with it, ``lost`` asked by the turn at each check."""

    def __init__(self) -> None:
        self._held: dict[int, str] = {}  # run pk → the lease owner (the claiming thread's id)
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="genie-lease-keeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def hold(self, run_id: int, owner: str) -> None:
        with self._lock:
            self._held[run_id] = owner
            self._lost.discard(run_id)

    def release(self, run_id: int) -> None:
        with self._lock:
            self._held.pop(run_id, None)
            self._lost.discard(run_id)

    def lost(self, run_id: int) -> bool:
        return run_id in self._lost  # a set lookup: asked once per token

    def _loop(self) -> None:
        while not self._stop.wait(settings.GENIE_RUN_LEASE / 3):
            try:
                self.renew()
            except Exception:  # a database outage: the next tick tries again, before the lease ends
                logger.exception("Could not renew the leases of this worker's runs")
            finally:
                release_connection()

    def renew(self) -> int:
        """Extend every held lease still this process's; note the others as lost. One
        UPDATE when every lease is still held (the usual case), a read besides when not.
        Returns how many were renewed."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return 0
        still_ours = reduce(operator.or_, (Q(pk=pk, lease_owner=owner) for pk, owner in held.items()))
        until = timezone.now() + timedelta(seconds=settings.GENIE_RUN_LEASE)
        renewed = Run.objects.filter(still_ours, status=Run.Status.RUNNING).update(lease_expires_at=until)
        if renewed < len(held):
            ours = set(Run.objects.filter(still_ours, status=Run.Status.RUNNING).values_list("pk", flat=True))
            with self._lock:
                # Only runs still held: one released meanwhile ended (or paused) by its own turn.
                self._lost |= {pk for pk in held if pk not in ours and pk in self._held}
        return renewed


keeper = LeaseKeeper()
