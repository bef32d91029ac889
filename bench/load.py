"""A lean SSE load client, run in its own process so it never shares a GIL with the server's
helpers (the fake LLM) or the orchestrator.

httpx spends ~100 µs of client CPU per event, enough to become the bottleneck of a
2-core machine long before the server does; this client is a bare asyncio protocol that
only finds event boundaries and the fake LLM's send stamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STAMP = re.compile(rb'"delta":"(\d+\.\d+) "')
FINISH = b'"type":"finish"'
EVENT_END = b"\n\n"


@dataclass
class StreamStats:
    status: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    finished: bool = False
    first_event_at: float = 0.0
    last_event_at: float = 0.0


class StreamReader(asyncio.Protocol):
    """Reads one SSE response: counts ``data:`` events and the latency of stamped deltas."""

    def __init__(self, request: bytes, stats: StreamStats, connected: asyncio.Future, done: asyncio.Future) -> None:
        self.request = request
        self.stats = stats
        self.connected = connected
        self.done = done
        self.pending = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.stats.status:
            self.stats.status = int(data[9:12])
            if not self.connected.done():
                self.connected.set_result(self.stats.status)
            if self.stats.status != 200:
                self.transport.close()
                return
        data = self.pending + data
        cut = data.rfind(EVENT_END)
        if cut < 0:
            self.pending = data
            return
        complete, self.pending = data[: cut + 2], data[cut + 2 :]
        self.stats.events += complete.count(b"\ndata: ")
        for match in STAMP.finditer(complete):
            self.stats.latencies.append(now - float(match.group(1)))
            self.stats.first_event_at = self.stats.first_event_at or now
            self.stats.last_event_at = now
        if FINISH in complete:
            self.stats.finished = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_result(self.stats.status)
        if not self.done.done():
            self.done.set_result(None)


def get_request(url: str, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def read_streams(
    urls: list[str],
    headers: dict[str, str],
    *,
    server_pid: int,
    time_limit: float,
    on_open: Callable[[dict[str, Any]], None] = lambda _: None,
    connect_batch: int = 100,
) -> dict[str, Any]:
    """Open every URL, wait for all their 200s (then call ``on_open``), then read them
    all to their finish.

    Returns counts, latencies and the server process's CPU seconds spent after every
    stream was open (the relay's share, without the set-up of the streams)."""
    loop = asyncio.get_running_loop()
    stats = [StreamStats() for _ in urls]
    connected = [loop.create_future() for _ in urls]
    done = [loop.create_future() for _ in urls]
    deadline = loop.time() + time_limit
    transports = []
    started = time.perf_counter()
    for start in range(0, len(urls), connect_batch):
        batch = range(start, min(start + connect_batch, len(urls)))
        for i in batch:
            parts = urlsplit(urls[i])
            transport, _ = await loop.create_connection(
                lambda i=i: StreamReader(get_request(urls[i], headers), stats[i], connected[i], done[i]),
                parts.hostname,
                parts.port,
            )
            transports.append(transport)
        await asyncio.wait_for(asyncio.gather(*(connected[i] for i in batch)), max(deadline - loop.time(), 0.1))
    open_seconds = time.perf_counter() - started
    on_open({"open_seconds": open_seconds, "statuses": sorted({s.status for s in stats})})
    cpu_open = cpu_seconds(server_pid)
    relay_started = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*done), max(deadline - loop.time(), 0.1))
    relay_seconds = time.perf_counter() - relay_started
    cpu_relay = cpu_seconds(server_pid) - cpu_open
    for transport in transports:
        transport.close()
    latencies = [value for s in stats for value in s.latencies]
    firsts = [s.first_event_at for s in stats if s.first_event_at]
    lasts = [s.last_event_at for s in stats if s.last_event_at]
    return {
        "streams": len(urls),
        "statuses": sorted({s.status for s in stats}),
        "finished": sum(s.finished for s in stats),
        "events": sum(s.events for s in stats),
        "latencies": latencies,
        "open_seconds": open_seconds,
        "relay_seconds": relay_seconds,
        "events_window_seconds": (max(lasts) - min(firsts)) if firsts else 0.0,
        "server_cpu_relay_seconds": cpu_relay,
    }


def _child(conn: Any, urls: list[str], headers: dict[str, str], server_pid: int, timeout: float) -> None:
    try:
        conn.send(
            asyncio.run(read_streams(urls, headers, server_pid=server_pid, time_limit=timeout, on_open=conn.send))
        )
    except BaseException as exc:  # report, never hang the parent
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


class StreamLoad:
    """``read_streams`` in a child process: ``start()``, do what makes the events, ``result()``."""

    def __init__(self, urls: list[str], headers: dict[str, str], *, server_pid: int, timeout: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._parent, child = context.Pipe(duplex=False)
        self.timeout = timeout
        self.process = context.Process(target=_child, args=(child, urls, headers, server_pid, timeout), daemon=True)

    def start(self) -> StreamLoad:
        self.process.start()
        return self

    def opened(self) -> dict[str, Any]:
        """Blocks until every stream answered (or the client failed)."""
        if not self._parent.poll(self.timeout + 30):
            return {"error": "load client did not open its streams in time"}
        return self._parent.recv()

    def close(self) -> None:
        """End the client now: its streams disconnect."""
        self.process.kill()
        self.process.join(5)

    def result(self) -> dict[str, Any]:
        try:
            if not self._parent.poll(self.timeout + 30):
                return {"error": "load client did not report in time"}
            return self._parent.recv()
        finally:
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()


TEXT_DELTA = b'"type":"text-delta"'


@dataclass
class PostStats:
    status: int = 0
    sent_at: float = 0.0  # perf_counter, when the request's bytes went out
    first_at: float = 0.0  # perf_counter, when its first text-delta arrived
    finished: bool = False


class PostReader(asyncio.Protocol):
    """One streaming POST: notes when its first ``text-delta`` arrives and reads on to its
    ``finish``. Keeps only a short tail of what it read (a marker split between reads)."""

    def __init__(self, stats: PostStats, first: asyncio.Future, done: asyncio.Future, marker: bytes) -> None:
        self.stats, self.first, self.done, self.marker = stats, first, done, marker
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes) -> None:
        self.stats.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.stats.status:
            self.stats.status = int(data[9:12])
        data = self.tail + data
        if not self.first.done() and self.marker in data:
            self.stats.first_at = now
            self.first.set_result(None)
        if FINISH in data:
            self.stats.finished = True
            self.transport.close()
        self.tail = data[-32:]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.first, self.done):
            if not future.done():
                future.set_result(None)


def post_request(url: str, headers: dict[str, str], body: bytes) -> bytes:
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def burst(
    requests: list[tuple[str, bytes]], *, time_limit: float, signal: Any, marker: bytes = TEXT_DELTA
) -> dict[str, Any]:
    """Connect once per request (``(url, raw request)``), tell ``signal`` ("connected") and
    wait for its go, send every request at once, tell it ("firsts") when every first token
    is in (or its stream ended without one), and read every stream to its end."""
    loop = asyncio.get_running_loop()
    stats = [PostStats() for _ in requests]
    firsts = [loop.create_future() for _ in requests]
    done = [loop.create_future() for _ in requests]
    readers = []
    for i, (url, _) in enumerate(requests):
        parts = urlsplit(url)
        _, reader = await loop.create_connection(
            lambda i=i: PostReader(stats[i], firsts[i], done[i], marker), parts.hostname, parts.port
        )
        readers.append(reader)
    signal("connected")
    started = time.perf_counter()
    for reader, (_, request) in zip(readers, requests, strict=True):
        reader.send(request)
    deadline = loop.time() + time_limit
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*firsts), max(deadline - loop.time(), 0.1))
    signal("firsts")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*done), max(deadline - loop.time(), 0.1))
    for reader in readers:
        reader.transport.close()
    return {
        "statuses": sorted({s.status for s in stats}),
        "finished": sum(s.finished for s in stats),
        "ttft": [s.first_at - s.sent_at if s.first_at else float("nan") for s in stats],
        "seconds": time.perf_counter() - started,
    }


async def steady(
    requests: list[tuple[str, bytes]], *, rate: float, seconds: float, time_limit: float, signal: Any
) -> dict[str, Any]:
    """A new streaming POST every 1/``rate`` s for ``seconds`` (taking ``requests`` in turn),
    each on a connection of its own opened at its time and read to its ``finish``, all
    within ``time_limit`` s from the first send. Tells ``signal`` ("connected") first
    and waits for its go. Returns each turn's time to first token from its send (and when
    it was sent, from the first send), how many were open at most and on average at a
    send, and the turns that ended without their ``finish``."""
    loop = asyncio.get_running_loop()
    signal("connected")
    count = max(1, round(rate * seconds))
    stats = [PostStats() for _ in range(count)]
    done: list[asyncio.Future] = []
    readers = []
    open_at_send = []
    started = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        url, request = requests[i % len(requests)]
        parts = urlsplit(url)
        first, finished = loop.create_future(), loop.create_future()
        done.append(finished)
        open_at_send.append(sum(not future.done() for future in done))  # this one among them
        try:
            _, reader = await loop.create_connection(
                lambda i=i, first=first, finished=finished: PostReader(stats[i], first, finished, TEXT_DELTA),
                parts.hostname,
                parts.port,
            )
        except OSError:  # counted as a turn that never answered
            finished.set_result(None)
            continue
        reader.send(request)
        readers.append(reader)
    sent_seconds = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*done), max(started + time_limit - time.perf_counter(), 0.1))
    for reader in readers:
        reader.transport.close()
    return {
        "turns": count,
        "statuses": sorted({s.status for s in stats}),
        "finished": sum(s.finished for s in stats),
        "ttft": [s.first_at - s.sent_at if s.first_at else float("nan") for s in stats],
        "sent_after": [s.sent_at - started if s.sent_at else float("nan") for s in stats],
        "open_at_send_max": max(open_at_send),
        "open_at_send_mean": sum(open_at_send) / len(open_at_send),
        "sent_seconds": sent_seconds,
        "seconds": time.perf_counter() - started,
    }


def _load_child(conn: Any, scenario: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    def signal(what: str) -> None:
        conn.send(what)
        if what == "connected":
            conn.recv()  # the parent's go, after it noted the servers' CPU

    try:
        conn.send(asyncio.run(scenario(**kwargs, signal=signal)))
    except BaseException as exc:  # report, never hang the parent
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


class BurstLoad:
    """``burst`` in a child process: ``start()``, ``wait("connected")``, ``go()``,
    ``wait("firsts")``, ``result()``; between the steps the parent reads the servers' CPU."""

    scenario = staticmethod(burst)

    def __init__(self, requests: list[tuple[str, bytes]], *, timeout: float, **kwargs: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._parent, child = context.Pipe(duplex=True)
        self.timeout = timeout
        kwargs = {"requests": requests, "time_limit": timeout, **kwargs}
        self.process = context.Process(target=_load_child, args=(child, self.scenario, kwargs), daemon=True)

    def start(self) -> BurstLoad:
        self.process.start()
        return self

    def wait(self, what: str) -> dict[str, Any] | None:
        """None once the child says ``what``; its error report when it failed instead."""
        if not self._parent.poll(self.timeout + 30):
            return {"error": f"load client never said {what}"}
        said = self._parent.recv()
        return None if said == what else said

    def go(self) -> None:
        self._parent.send("go")

    def result(self) -> dict[str, Any]:
        try:
            if not self._parent.poll(self.timeout + 30):
                return {"error": "load client did not report in time"}
            return self._parent.recv()
        finally:
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()


class SteadyLoad(BurstLoad):
    """``steady`` in a child process: ``start()``, ``wait("connected")``, ``go()``,
    ``result()`` (``rate`` and ``seconds`` as keywords); ``pid`` to pin it to a core."""

    scenario = staticmethod(steady)

    @property
    def pid(self) -> int:
        return self.process.pid
