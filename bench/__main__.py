"""Benchmarks of the streaming spine: ``python -m bench [--quick]`` (or ``make bench``).

Starts everything on loopback (Daphne with production settings, two Celery workers,
PostgreSQL and Redis as configured, the scripted fake LLM from ``tests/fakellm.py``), runs
each scenario beside its floor, prints a table and writes ``bench/results.json``. Every
loop is bounded in count and time. Benchmarks are not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
DEFAULT_DATABASE_URL = "postgres://postgres:postgres@127.0.0.1:5432/genie_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
STALL_TIMEOUT = 5.0  # GENIE_SSE_STALL_TIMEOUT for the bench server (30 s by default), to keep the run short


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    measured = [v for v in values if not math.isnan(v)]  # a turn whose first delta never came
    summary = {f"p{q}": round(percentile(measured, q) * 1000, 3) for q in (50, 95, 99)} | {"n": len(measured)}
    return summary | ({"missing": len(values) - len(measured)} if len(measured) < len(values) else {})


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    processes: list[Any] = field(default_factory=list)
    worker_concurrency: int = 50  # each worker's threads

    @property
    def worker_settings(self) -> dict[str, Any]:
        """The Celery settings the bench chose (``--worker-concurrency``, ``--worker-prefetch``)."""
        return {
            "concurrency_per_worker": self.worker_concurrency,
            "prefetch_multiplier": int(self.env["GENIE_WORKER_PREFETCH"]),
            "acks_late": True,  # genie/settings.py: a turn is redelivered if its worker dies
            "db_pool_size_per_process": int(self.env.get("GENIE_DB_POOL_SIZE", "20")),
        }

    @property
    def daphne_pid(self) -> int:
        return self.processes[0].proc.pid

    def fresh_daphne(self) -> None:
        """A new Daphne process, so a memory figure does not read what earlier scenarios left."""
        from tests.processes import start_daphne

        self.processes[0].stop()
        self.processes[0], self.base_url = start_daphne(self.env, ROOT / "var" / "bench" / "daphne.log")

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def start_stack(workers: int, *, concurrency: int, prefetch: int) -> Stack:
    """Daphne with production settings (DEBUG=0) and ``workers`` Celery worker processes of
    ``concurrency`` threads each, reserving ``prefetch`` tasks per thread."""
    from django.conf import settings

    from tests.processes import start_daphne, start_worker

    env = dict(os.environ)
    env.update(
        DEBUG="0",
        SECRET_KEY="bench-" + uuid.uuid4().hex,
        # The agents this process stores have their secrets encrypted with its own key (derived
        # from its SECRET_KEY when unset): the stack must read them with the same one.
        GENIE_ENCRYPTION_KEY=",".join(settings.GENIE_ENCRYPTION_KEY),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        # Titles on, as deployed; the fixture's agent has them off (generate_titles): its
        # scenarios measure turns, the bursts' agent measures them with their titles.
        GENIE_GENERATE_TITLES="1",
        GENIE_LOG_LEVEL="WARNING",
        GENIE_RATE_PER_KEY="",
        GENIE_MAX_STREAMS_PER_KEY="0",  # thousands of streams on one key, by design
        GENIE_RATE_PUBLISHABLE_IP="",
        GENIE_RATE_PUBLISHABLE_KEY="",
        GENIE_SSE_STALL_TIMEOUT=str(STALL_TIMEOUT),
        GENIE_WORKER_PREFETCH=str(prefetch),
        DJANGO_SETTINGS_MODULE="genie.settings",
    )
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    daphne, url = start_daphne(env, logs / "daphne.log")
    stack = Stack(base_url=url, env=env, processes=[daphne], worker_concurrency=concurrency)
    stack.processes += [start_worker(env, logs / f"worker{n}.log", concurrency=concurrency) for n in range(workers)]
    return stack


def prepare_database(env: dict[str, str]) -> None:
    """Create the bench database when missing and migrate it."""
    import psycopg

    url = env["DATABASE_URL"]
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)


@dataclass
class Fixture:
    key: str
    agent_model: str
    session_uuid: str = ""


def make_fixture(fake_base_url: str) -> Fixture:
    from chat.models import Agent
    from genie.models import AccessToken
    from genie.services import create_access_token, default_team

    team = default_team()
    model = f"bench-{uuid.uuid4().hex[:8]}"
    Agent.objects.create(
        team=team,
        handle=model,
        name="Bench",
        provider="openai",
        model=model,
        base_url=fake_base_url,
        temperature=0,
        generate_titles=False,
    )
    _, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET, name="bench")
    return Fixture(key=key, agent_model=model)


async def first_delta_after(client: httpx.AsyncClient, url: str, headers: dict[str, str], start: float) -> float:
    async with client.stream("GET", url, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"text-delta"' in line:
                return time.perf_counter() - start
    return float("nan")


async def fake_llm_ttft(client: httpx.AsyncClient, fake: Any, model: str) -> float:
    """The floor of a first token: the same client reading the fake LLM directly."""
    start = time.perf_counter()
    async with client.stream(
        "POST", f"{fake.base_url}/chat/completions", json={"model": model, "stream": True, "messages": []}
    ) as response:
        async for line in response.aiter_lines():
            if '"content": "hello"' in line:
                return time.perf_counter() - start
    return float("nan")


async def ttft_scenario(stack: Stack, fx: Fixture, fake: Any, turns: int) -> dict[str, Any]:
    """POST sessions → first text-delta over SSE, against the same client reading the fake
    LLM; with where the time goes (from the run's stored timestamps)."""
    from asgiref.sync import sync_to_async

    from runs.models import Run

    fake.replace_script(fx.agent_model, [("text", "hello"), ("text", " world")])
    headers = {"Authorization": f"Bearer {fx.key}"}
    genie, floor, post, queued, to_token, relayed = [], [], [], [], [], []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(turns):
            wall = time.time()
            start = time.perf_counter()
            created = (
                await client.post(
                    f"{stack.base_url}/api/v1/sessions", headers=headers, json={"text": "hi", "agent": fx.agent_model}
                )
            ).json()
            post.append(time.perf_counter() - start)
            # The run's own stream: a two-token run may be over before the client asks.
            genie.append(await first_delta_after(client, f"{created['run_url']}/stream", headers, start))
            run = await sync_to_async(Run.objects.get)(uuid=created["run_uuid"])
            for _ in range(100):  # first_token_at is stored just after the first token is out
                if run.first_token_at is not None:
                    break
                await asyncio.sleep(0.01)
                run = await sync_to_async(Run.objects.get)(uuid=created["run_uuid"])
            queued.append((run.started_at - run.created_at).total_seconds())
            to_token.append((run.first_token_at - run.started_at).total_seconds())
            relayed.append(wall + genie[-1] - run.first_token_at.timestamp())
            floor.append(await fake_llm_ttft(client, fake, fx.agent_model))
    added = [g - f for g, f in zip(genie, floor, strict=False)]
    # One request per turn: the POST answers with the turn's stream.
    streaming, streaming_floor = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(turns):
            start = time.perf_counter()
            async with client.stream(
                "POST",
                f"{stack.base_url}/api/v1/sessions",
                headers={**headers, "Accept": "text/event-stream"},
                json={"text": "hi", "agent": fx.agent_model},
            ) as response:
                first = float("nan")
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and '"text-delta"' in line:
                        first = time.perf_counter() - start
                        break
            streaming.append(first)
            streaming_floor.append(await fake_llm_ttft(client, fake, fx.agent_model))
    return {
        "genie_ttft_ms": summary_ms(genie),
        "floor_ttft_ms": summary_ms(floor),
        "added_ttft_ms": summary_ms(added),
        "added_ttft_streaming_post_ms": summary_ms([g - f for g, f in zip(streaming, streaming_floor, strict=False)]),
        "breakdown_p50_ms": {
            "post_response": summary_ms(post)["p50"],
            "run_created_to_started": summary_ms(queued)["p50"],
            "run_started_to_first_token": summary_ms(to_token)["p50"],
            "first_token_to_client": summary_ms(relayed)["p50"],
        },
    }


async def scale_out_scenario(stack: Stack, fx: Fixture, fake: Any, turns: int, tokens: int = 20) -> dict[str, Any]:
    """Two Daphne processes (A, B) and two workers on one set of sessions: each turn is
    POSTed on A and read on B, which holds no state of it (the run writes through a worker,
    the event log is Redis and PostgreSQL); halfway the client drops B and resumes on A with
    Last-Event-ID. Figures: added time to first token across processes, per-token relay
    latency (stamped by the fake LLM), and whether every resumed stream is complete."""
    from asgiref.sync import sync_to_async

    from tests.processes import start_daphne

    second, url_b = start_daphne(stack.env, ROOT / "var" / "bench" / "daphne-b.log")
    headers = {"Authorization": f"Bearer {fx.key}", "Accept": "text/event-stream"}
    fake.replace_script(fx.agent_model, [("text", "hello"), *[("delay", 0.01), ("stamp", None)] * tokens])
    added, latencies, complete, duplicated = [], [], 0, 0
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(turns):
                start = time.perf_counter()
                created = (
                    await client.post(
                        f"{stack.base_url}/api/v1/sessions",
                        headers=headers | {"Accept": "application/json"},
                        json={"text": "hi", "agent": fx.agent_model},
                    )
                ).json()
                path = f"/api/v1/sessions/{created['uuid']}/runs/{created['run_uuid']}/stream"
                ids, texts, first = [], [], float("nan")
                for base, cut in ((url_b, tokens // 2), (stack.base_url, None)):
                    resume = {"Last-Event-ID": str(ids[-1])} if ids else {}
                    async with client.stream("GET", f"{base}{path}", headers=headers | resume) as response:
                        event_id = None
                        async for line in response.aiter_lines():
                            if line.startswith("id: "):
                                event_id = int(line[4:])
                            if not line.startswith("data: "):
                                continue
                            chunk = json.loads(line[6:])
                            ids.append(event_id)
                            if chunk["type"] == "text-delta":
                                if not texts:
                                    first = time.perf_counter() - start
                                texts.append(chunk["delta"])
                                if chunk["delta"] != "hello":
                                    latencies.append(time.time() - float(chunk["delta"]))
                            if cut is not None and len(texts) > cut:
                                break
                added.append(first - await fake_llm_ttft(client, fake, fx.agent_model))
                duplicated += len(ids) - len(set(ids))
                stored = await sync_to_async(agent_text)(created["uuid"])
                complete += "".join(texts) == stored
    finally:
        second.stop()
    return {
        "turns": turns,
        "tokens_per_turn": tokens + 1,
        "added_ttft_ms": summary_ms(added),
        "token_latency_ms": summary_ms(latencies),
        "resumed_complete": complete,
        "duplicated_events": duplicated,
    }


BURST_INTERVAL = 0.25  # the reply of each turn in a burst: 4 tokens a second (50 tokens, 5 with --quick)


def burst_script(tokens: int) -> list[tuple[str, Any]]:
    return [("text", "hello "), *[("delay", BURST_INTERVAL), ("text", "tok ")] * (tokens - 1)]


def measure_burst(
    requests: list[tuple[str, bytes]], pids: list[int], tokens: int, marker: bytes | None = None
) -> dict[str, Any]:
    """One burst through the lean client (``bench.load.BurstLoad``): every request sent at
    once on connections opened before; the servers' CPU (``pids``) from the send to the
    last first token, and to the last stream's end."""
    from bench.load import BurstLoad

    extra = {"marker": marker} if marker is not None else {}
    load = BurstLoad(requests, timeout=60 + tokens * BURST_INTERVAL * 4, **extra).start()
    if (error := load.wait("connected")) is not None:
        return error
    cpu = sum(cpu_seconds(pid) for pid in pids)
    wall = time.time()
    load.go()
    if (error := load.wait("firsts")) is not None:
        return error
    cpu_firsts = sum(cpu_seconds(pid) for pid in pids) - cpu
    out = load.result()
    if "error" in out:
        return out
    cpu_turns = sum(cpu_seconds(pid) for pid in pids) - cpu
    n = len(requests)
    ttft = out["ttft"]
    return {
        "turns": n,
        "statuses": out["statuses"],
        "finished": out["finished"],
        "ttft_ms": summary_ms(ttft) | {"max": round(max(ttft) * 1000, 3) if ttft else None},
        "cpu_ms_per_turn_to_first_tokens": round(cpu_firsts / n * 1000, 2),
        "cpu_ms_per_turn": round(cpu_turns / n * 1000, 2),
        "wall_started": wall,
    }


def wait_for_titles(agent_model: str, since: float, timeout: float = 60.0) -> None:
    """Until the sessions started after ``since`` have their titles (a burst's titles run
    after its replies: the next burst starts quiet unless it means not to)."""
    from datetime import UTC, datetime

    from chat.models import Session

    after = datetime.fromtimestamp(since, tz=UTC)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Session.objects.filter(agent__handle=agent_model, created_at__gte=after, title="").exists():
            return
        time.sleep(0.2)


def server_timings(agent_model: str, since: float) -> dict[str, Any]:
    """The runs of a burst as the server stored them: queued → started, started → first token."""
    from datetime import UTC, datetime

    from runs.models import Run

    runs = Run.objects.filter(
        session__agent__handle=agent_model, created_at__gte=datetime.fromtimestamp(since, tz=UTC)
    ).values_list("created_at", "started_at", "first_token_at")
    queued = [(s - c).total_seconds() for c, s, _ in runs if s]
    to_token = [(f - s).total_seconds() for _, s, f in runs if s and f]
    # From the burst's send: where a client's wait goes (the POST before its run is
    # stored; the worker; the relay after the first token is written).
    sent = datetime.fromtimestamp(since, tz=UTC)
    to_queued = [(c - sent).total_seconds() for c, _, _ in runs]
    to_stored_token = [(f - sent).total_seconds() for _, _, f in runs if f]
    return {
        "send_to_queued_ms": summary_ms(to_queued) | {"max": round(max(to_queued, default=0) * 1000, 3)},
        "send_to_first_token_stored_ms": summary_ms(to_stored_token)
        | {"max": round(max(to_stored_token, default=0) * 1000, 3)},
        "queued_to_started_ms": summary_ms(queued) | {"max": round(max(queued, default=0) * 1000, 3)},
        "started_to_first_token_ms": summary_ms(to_token) | {"max": round(max(to_token, default=0) * 1000, 3)},
    }


def burst_scenario(
    stack: Stack, fx: Fixture, fake: Any, sizes: list[str], tokens: int, warm: int, peer: Any | None
) -> dict[str, Any]:
    """Bursts of new chats: N sessions started at once, each a streaming ``POST sessions``
    (half on each of two Daphne processes, two workers), the fake model answering 50
    tokens at 4 a second. Time to first token from the request's send, the server's own
    queued → started and started → first token, and the CPU of the Daphne processes and
    workers per turn (to the burst's last first token, and for the whole turns). Each
    burst starts once the previous one's titles are written; ``N+N`` is a burst of N
    started the moment the previous burst ended, its titles in flight. ``peer`` (URL, pid,
    model): the same bursts against resumable-stream."""
    from bench.load import post_request
    from chat.models import Agent
    from genie.services import default_team
    from tests.processes import start_daphne

    model = f"burst-{uuid.uuid4().hex[:8]}"
    Agent.objects.create(
        team=default_team(), handle=model, name="Burst", provider="openai", model=model, base_url=fake.base_url
    )
    fake.replace_script(model, burst_script(tokens))
    second, url_b = start_daphne(stack.env, ROOT / "var" / "bench" / "daphne-b.log")
    pids = [stack.daphne_pid, second.proc.pid, *(process.proc.pid for process in stack.processes[1:])]
    body = json.dumps({"text": "hi", "agent": model}).encode()
    headers = {"Authorization": f"Bearer {fx.key}"}
    out: dict[str, Any] = {"tokens_per_turn": tokens, "tokens_per_second": 1 / BURST_INTERVAL, "genie": {}}
    try:
        since = time.time()
        # Unrecorded: every worker process's first turns pay imports and connections.
        warm_up = [(url, post_request(f"{url}/api/v1/sessions", headers, body)) for url in (stack.base_url, url_b)]
        measure_burst((warm_up * warm)[:warm], pids, tokens)
        for label in sizes:
            n = int(label.split("+")[-1])
            if "+" not in label:
                wait_for_titles(model, since)
            requests = [(url, post_request(f"{url}/api/v1/sessions", headers, body)) for url in (stack.base_url, url_b)]
            requests = (requests * n)[:n]
            measured = measure_burst(requests, pids, tokens)
            if "error" not in measured:
                since = measured.pop("wall_started")
                measured |= server_timings(model, since)
            out["genie"][label] = measured
            print(f"burst {label}: {json.dumps(measured)}", file=sys.stderr, flush=True)
    finally:
        second.stop()
    # The floor: the same bursts straight at the fake model (the one Python process that
    # answers every turn's model call here, Genie's and the peer's).
    out["fake_llm_direct"] = {}
    direct = json.dumps({"model": model, "stream": True, "messages": []}).encode()
    for label in sizes:
        n = int(label.split("+")[-1])
        requests = [(fake.base_url, post_request(f"{fake.base_url}/chat/completions", {}, direct))] * n
        measured = measure_burst(requests, [], tokens, marker=b'"content": "hello')
        out["fake_llm_direct"][label] = {key: measured[key] for key in ("ttft_ms", "error") if key in measured}
    if peer is not None:
        url, pid, peer_model = peer
        fake.replace_script(peer_model, burst_script(tokens))
        out["peer"] = {}
        for label in sizes:
            n = int(label.split("+")[-1])
            requests = [(url, post_request(f"{url}/chat/{uuid.uuid4().hex}", {}, b"")) for _ in range(n)]
            measured = measure_burst(requests, [pid], tokens)
            measured.pop("wall_started", None)
            out["peer"][label] = measured
            print(f"peer burst {label}: {json.dumps(measured)}", file=sys.stderr, flush=True)
    return out


def bursts_beside_peer(stack: Stack, fx: Fixture, fake: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    started = start_peer(fake)
    try:
        beside = None if started is None else (started[1], started[0].proc.pid, started[2])
        return burst_scenario(stack, fx, fake, sizes["burst"], sizes["burst_tokens"], sizes["burst_warm_up"], beside)
    finally:
        if started is not None:
            started[0].stop()


CAPACITY_TTFT_LIMIT_MS = 300.0  # the bar: first tokens under 300 ms at p99
# A layout's rates stop rising once a rate's p99 is this many times the bar, or a turn
# failed: past saturation every higher rate only queues more.
CAPACITY_GIVE_UP_FACTOR = 10


@dataclass(frozen=True)
class Layout:
    """Where the capacity scenario's servers run: ``processes`` Daphnes and as many workers;
    ``one_core``: all of them pinned to one core, the load client and the fake model
    (this process) to another."""

    name: str
    processes: int
    one_core: bool


LAYOUTS = {
    "one-core": Layout("one-core", processes=1, one_core=True),
    "two-cores": Layout("two-cores", processes=2, one_core=False),
}


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit their creator's)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), cpus)


@contextlib.contextmanager
def short_titles(fake: Any) -> Any:
    """Session titles answered at once, as a model answers a title's short prompt: the
    scripted 12.5 s reply would hold a worker thread per title as long as a turn."""
    scripted = fake.next_reply

    def next_reply(model: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
        if fake.is_title_request(body):
            return [("text", "A short title")]
        return scripted(model, body)

    fake.next_reply = next_reply
    try:
        yield
    finally:
        del fake.next_reply  # the class's again


def measure_rate(
    requests: list[tuple[str, bytes]], pids: list[int], rate: float, seconds: float, tokens: int, client_cpus: set[int]
) -> dict[str, Any]:
    """``rate`` new chats a second for ``seconds`` through the lean client
    (``bench.load.SteadyLoad``), each read to its finish; the servers' CPU (``pids``) from
    the first send to the last stream's end."""
    from bench.load import SteadyLoad

    duration = tokens * BURST_INTERVAL
    load = SteadyLoad(requests, timeout=seconds + duration * 4 + 60, rate=rate, seconds=seconds).start()
    if (error := load.wait("connected")) is not None:
        return error
    if client_cpus:
        pin(load.pid, client_cpus)
    cpu = sum(cpu_seconds(pid) for pid in pids)
    wall = time.time()
    load.go()
    out = load.result()
    if "error" in out:
        return out
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
    ttft = out["ttft"]
    # Once a stream's duration has passed the streams open have reached their level.
    steady = [t for t, sent in zip(ttft, out["sent_after"], strict=True) if sent >= duration]
    measured = [t for t in ttft if not math.isnan(t)]
    return {
        "rate": rate,
        "turns": out["turns"],
        "statuses": out["statuses"],
        "finished": out["finished"],
        "failed": out["turns"] - out["finished"],
        "ttft_ms": summary_ms(ttft) | {"max": round(max(measured) * 1000, 3) if measured else None},
        "ttft_ms_after_ramp": summary_ms(steady) if steady else None,
        "streams_open_max": out["open_at_send_max"],
        "streams_open_mean": round(out["open_at_send_mean"], 1),
        "streams_open_expected": round(rate * duration, 1),
        "send_seconds": round(out["sent_seconds"], 2),  # beyond ``seconds``: the client fell behind
        "cpu_ms_per_turn": round(cpu / out["turns"] * 1000, 2),
        "server_cores_busy": round(cpu / out["seconds"], 3),
        "wall_started": wall,
    }


def within_limit(rate: dict[str, Any]) -> bool:
    return "error" not in rate and not rate["failed"] and rate["ttft_ms"]["p99"] <= CAPACITY_TTFT_LIMIT_MS


def capacity_layout(
    stack: Stack, layout: Layout, fake: Any, headers: dict[str, str], sizes: dict[str, Any]
) -> dict[str, Any]:
    """The capacity of one layout: its own Daphnes and workers on a task queue of their own
    (the stack's workers idle meanwhile), warmed up, then each rate in turn, each starting
    once the previous one's streams ended and its titles are written."""
    from bench.load import post_request
    from chat.models import Agent
    from genie.services import default_team
    from tests.processes import start_daphne, start_worker

    tokens, seconds = sizes["capacity_tokens"], sizes["capacity_seconds"]
    model = f"capacity-{uuid.uuid4().hex[:8]}"
    Agent.objects.create(
        team=default_team(), handle=model, name="Capacity", provider="openai", model=model, base_url=fake.base_url
    )
    env = stack.env | {"GENIE_TASK_QUEUE": f"bench-{model}"}
    logs = ROOT / "var" / "bench"
    servers = [start_daphne(env, logs / f"capacity-daphne{n}.log") for n in range(layout.processes)]
    processes = [server for server, _ in servers]
    processes += [
        start_worker(env, logs / f"capacity-worker{n}.log", concurrency=stack.worker_concurrency)
        for n in range(layout.processes)
    ]
    pids = [process.proc.pid for process in processes]
    available = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = set(available), set()
    if layout.one_core and len(available) > 1:
        server_cpus, client_cpus = {available[0]}, set(available[1:])
    mine = os.sched_getaffinity(0)
    body = json.dumps({"text": "hi", "agent": model}).encode()
    requests = [(url, post_request(f"{url}/api/v1/sessions", headers, body)) for _, url in servers]
    out: dict[str, Any] = {
        "daphnes": layout.processes,
        "workers": layout.processes,
        "server_cpus": sorted(server_cpus),
        "client_and_fake_model_cpus": sorted(client_cpus or available),
        "not_pinned": "PostgreSQL, Redis",
        "rates": {},
    }
    try:
        for pid in pids:
            pin(pid, server_cpus)
        if client_cpus:
            pin(os.getpid(), client_cpus)  # the fake model's threads
        # Unrecorded: every process's first turns pay imports and connections.
        fake.replace_script(model, burst_script(2))
        measure_burst(requests * 2, [], 2)
        fake.replace_script(model, burst_script(tokens))
        since = time.time()
        for rate in sizes["capacity_rates"]:
            wait_for_titles(model, since)
            measured = measure_rate(requests, pids, rate, seconds, tokens, client_cpus)
            if "error" not in measured:
                since = measured.pop("wall_started")
                timings = server_timings(model, since)
                # Timed from the rate's first send, not each turn's: a burst's figures only.
                del timings["send_to_queued_ms"], timings["send_to_first_token_stored_ms"]
                measured |= timings
            out["rates"][str(rate)] = measured
            print(f"capacity {layout.name} {rate}/s: {json.dumps(measured)}", file=sys.stderr, flush=True)
            if (
                "error" in measured
                or measured["failed"]
                or (measured["ttft_ms"]["p99"] > CAPACITY_TTFT_LIMIT_MS * CAPACITY_GIVE_UP_FACTOR)
            ):
                out["stopped_after"] = rate
                break
    finally:
        pin(os.getpid(), mine)
        for process in processes:
            process.stop()
    best = max((r for r in out["rates"].values() if within_limit(r)), key=lambda r: r["rate"], default=None)
    out["highest_rate_within_limit"] = best and best["rate"]
    out["streams_open_at_that_rate"] = best and best["streams_open_max"]
    out["cpu_ms_per_turn_at_that_rate"] = best and best["cpu_ms_per_turn"]
    return out


def capacity_scenario(stack: Stack, fx: Fixture, fake: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    """Steady new chats at each rate R of ``capacity_rates`` for ``capacity_seconds``: a
    streaming ``POST sessions`` every 1/R s (taking the layout's Daphnes in turn) from the
    lean client in its own process, each read to its finish, the fake model answering
    ``capacity_tokens`` tokens at 4 a second (titles at once). Per rate: time to first
    token from each send (p50/p99/max; also for the turns sent after the first stream's
    duration, when the streams open have reached R times the duration), turns finished, the
    streams open (at most, on average) as seen by the client, and the CPU of the layout's
    Daphnes and workers per turn. Per layout: the highest rate whose p99 stays within
    300 ms with every turn finished, and the streams open at it."""
    from django.conf import settings

    headers = {"Authorization": f"Bearer {fx.key}"}
    out: dict[str, Any] = {
        "ttft_limit_ms": CAPACITY_TTFT_LIMIT_MS,
        "tokens_per_turn": sizes["capacity_tokens"],
        "tokens_per_second": 1 / BURST_INTERVAL,
        "seconds_per_rate": sizes["capacity_seconds"],
        "worker_settings": stack.worker_settings,
        "daphne_request_concurrency": settings.GENIE_REQUEST_CONCURRENCY,  # same environment as the stack
        "layouts": {},
    }
    with short_titles(fake):
        for name in sizes["capacity_layouts"]:
            out["layouts"][name] = capacity_layout(stack, LAYOUTS[name], fake, headers, sizes)
    return out


def agent_text(session_uuid: str) -> str:
    from chat.models import Message

    return Message.objects.get(session__uuid=session_uuid, sender_role=Message.SenderRole.AGENT).text


def post_sessions(stack: Stack, fx: Fixture, count: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {fx.key}"}
    with httpx.Client(timeout=30) as client:
        return [
            client.post(
                f"{stack.base_url}/api/v1/sessions", headers=headers, json={"text": "hi", "agent": fx.agent_model}
            )
            .raise_for_status()
            .json()
            for _ in range(count)
        ]


@dataclass
class RelayTarget:
    """What a relay scenario drives: Genie, or the peer, reading the same fake LLM."""

    name: str
    model: str  # the fake LLM script its producers read
    server_pid: int  # the process whose CPU is the relay's
    headers: dict[str, str]
    start: Any  # start(n) starts n producers and returns one stream URL for each
    producer_pids: tuple[int, ...] = ()  # processes that read the model and write events


def genie_target(stack: Stack, fx: Fixture) -> RelayTarget:
    return RelayTarget(
        name="genie",
        model=fx.agent_model,
        server_pid=stack.daphne_pid,
        headers={"Authorization": f"Bearer {fx.key}"},
        start=lambda n: [f"{c['run_url']}/stream" for c in post_sessions(stack, fx, n)],
        producer_pids=tuple(process.proc.pid for process in stack.processes[1:]),
    )


def relay_scenario(
    target: RelayTarget, fake: Any, *, sessions: int, readers: int, tokens: int, interval: float
) -> dict[str, Any]:
    """``sessions`` producers (Genie: runs), each read by ``readers`` streams, each token
    stamped by the fake LLM with its send time and timed on arrival by a lean client in
    another process. Relay CPU is the server process's, counted while every stream is open."""
    from bench.load import StreamLoad

    streams = sessions * readers
    lead = 3.0 + 0.02 * streams  # time for every stream to open before the first token
    fake.replace_script(target.model, [("delay", lead), *[("stamp", None), ("delay", interval)] * tokens])
    producer_cpu = sum(cpu_seconds(pid) for pid in target.producer_pids)
    urls = [url for url in target.start(sessions) for _ in range(readers)]
    load = StreamLoad(
        urls, target.headers, server_pid=target.server_pid, timeout=lead + tokens * interval * 4 + 60
    ).start()
    opened = load.opened()
    out = load.result() if "error" not in opened else opened
    if "error" in out:
        return {"streams": streams, "sessions": sessions, "readers_per_session": readers, "error": out["error"]}
    window = out["events_window_seconds"] or out["relay_seconds"]
    producer_cpu = sum(cpu_seconds(pid) for pid in target.producer_pids) - producer_cpu
    return {
        "streams": streams,
        "sessions": sessions,
        "readers_per_session": readers,
        "tokens_per_stream": tokens,
        "tokens_per_second_per_stream": round(1 / interval, 1),
        "statuses": out["statuses"],
        "streams_finished": out["finished"],
        "events_relayed": out["events"],
        "open_seconds": round(out["open_seconds"], 2),
        "token_latency_ms": summary_ms(out["latencies"]),
        "relay_cpu_us_per_event": round(out["server_cpu_relay_seconds"] / max(out["events"], 1) * 1e6, 1),
        "events_per_s": round(len(out["latencies"]) / max(window, 1e-9), 1),
        # the workers' CPU for the whole turns, per token (Genie only; the peer's producer is its server)
        "producer_cpu_us_per_token": round(producer_cpu / (sessions * tokens) * 1e6, 1)
        if target.producer_pids
        else None,
    }


PEER = ROOT / "bench" / "peer"


def start_peer(fake: Any) -> tuple[Any, str, str] | None:
    """Vercel's resumable-stream on Node (``bench/peer``), installed from its lock file on
    first use; None where Node or npm is missing."""
    import shutil

    from tests.processes import LiveProcess, wait_for

    if not shutil.which("node") or not shutil.which("npm"):
        return None
    if not (PEER / "node_modules" / "resumable-stream").exists():
        installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER, capture_output=True, text=True)
        if installed.returncode != 0:  # no registry here: the rest of the run still counts
            print(f"peer skipped: npm ci failed: {installed.stderr[-500:]}", file=sys.stderr)
            return None
    model = f"peer-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PORT": "0", "FAKE_LLM_URL": fake.base_url, "MODEL": model}
    log = ROOT / "var" / "bench" / "peer.log"
    peer = LiveProcess(["node", str(PEER / "server.mjs")], env, log).start()
    wait_for(lambda: "listening on" in peer.log_text(), 30, "the peer")
    port = peer.log_text().split("listening on", 1)[1].split()[0]
    return peer, f"http://127.0.0.1:{port}", model


def peer_target(peer: Any, url: str, model: str) -> RelayTarget:
    def start(n: int) -> list[str]:
        ids = [uuid.uuid4().hex for _ in range(n)]
        with httpx.Client(timeout=30) as client:
            for stream_id in ids:
                client.post(f"{url}/chat/{stream_id}/start").raise_for_status()
        return [f"{url}/chat/{stream_id}" for stream_id in ids]

    return RelayTarget(name="resumable-stream", model=model, server_pid=peer.proc.pid, headers={}, start=start)


async def peer_ttft_scenario(url: str, model: str, fake: Any, turns: int) -> dict[str, Any]:
    """POST /chat/<id> → first text-delta on its own response, beside the fake LLM direct."""
    fake.replace_script(model, [("text", "hello"), ("text", " world")])
    peer, floor = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(turns):
            start = time.perf_counter()
            async with client.stream("POST", f"{url}/chat/{uuid.uuid4().hex}") as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and '"text-delta"' in line:
                        peer.append(time.perf_counter() - start)
                        break
            floor.append(await fake_llm_ttft(client, fake, model))
    added = [g - f for g, f in zip(peer, floor, strict=False)]
    return {"peer_ttft_ms": summary_ms(peer), "floor_ttft_ms": summary_ms(floor), "added_ttft_ms": summary_ms(added)}


def celery_hop_floor(stack: Stack, samples: int) -> dict[str, Any]:
    """The floor of "queued → started": a no-op Celery task's publish → start through the
    same broker, on a worker with Genie's settings (``bench/celery_floor.py``)."""
    from bench.celery_floor import celery_hops

    return summary_ms(celery_hops(stack.env, ROOT / "var" / "bench" / "celery-floor.log", samples))


def redis_hop_floor(samples: int) -> dict[str, Any]:
    """The floor of a relayed token: one XADD → XREAD hop through the same Redis."""
    import redis

    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    writer, reader = redis.Redis.from_url(url), redis.Redis.from_url(url)
    key = f"bench:floor:{uuid.uuid4().hex}"
    hops = []
    last = "0-0"
    for _ in range(samples):
        start = time.perf_counter()
        writer.xadd(key, {"t": "x"})
        entries = reader.xread({key: last}, block=1000, count=1)
        hops.append(time.perf_counter() - start)
        last = entries[0][1][0][0]
    writer.delete(key)
    return {"redis_hop_ms": summary_ms(hops)}


def idle_streams_scenario(stack: Stack, fx: Fixture, fake: Any, count: int) -> dict[str, Any]:
    """Open ``count`` SSE streams on one quiet run; Daphne's RSS per open stream."""
    from bench.load import StreamLoad

    headers = {"Authorization": f"Bearer {fx.key}"}
    # Quiet long enough to open and measure every stream; the client is closed after that.
    fake.replace_script(fx.agent_model, [("delay", 0.2), ("text", "x"), ("quiet", 20.0 + count * 0.01)])
    (created,) = post_sessions(stack, fx, 1)
    time.sleep(1.0)
    before = rss_kb(stack.daphne_pid)
    cpu_before = cpu_seconds(stack.daphne_pid)
    load = StreamLoad(
        [f"{created['run_url']}/stream"] * count, headers, server_pid=stack.daphne_pid, timeout=count * 0.02 + 120
    ).start()
    opened = load.opened()
    open_cpu = cpu_seconds(stack.daphne_pid) - cpu_before
    time.sleep(2.0)
    after = rss_kb(stack.daphne_pid)
    cpu_idle_start = cpu_seconds(stack.daphne_pid)
    time.sleep(5.0)
    idle_cpu_share = (cpu_seconds(stack.daphne_pid) - cpu_idle_start) / 5.0
    load.close()
    time.sleep(2.0)
    return {
        "idle_streams": count,
        "statuses": opened.get("statuses"),
        "open_seconds": round(opened.get("open_seconds", float("nan")), 2),
        "open_cpu_ms_per_stream": round(open_cpu / count * 1000, 2),
        "rss_kb_per_stream": round((after - before) / count, 1),
        "idle_cpu_share_of_a_core": round(idle_cpu_share, 3),
        "daphne_rss_mb": round(after / 1024, 1),
        "daphne_rss_mb_after_close": round(rss_kb(stack.daphne_pid) / 1024, 1),
    }


def stalled_reader_scenario(stack: Stack, fx: Fixture, fake: Any, tokens: int) -> dict[str, Any]:
    """One client opens a stream and never reads while the run writes ``tokens`` 1 KB
    deltas as fast as it can: how much does the server's memory grow, and is it returned?"""
    import socket
    from urllib.parse import urlsplit

    from bench.load import get_request
    from runs.models import Run

    headers = {"Authorization": f"Bearer {fx.key}"}
    fake.replace_script(fx.agent_model, [("delay", 1.0), *[("text", "x" * 1024)] * tokens])
    (created,) = post_sessions(stack, fx, 1)
    url = f"{created['run_url']}/stream"
    parts = urlsplit(url)
    before = rss_kb(stack.daphne_pid)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parts.hostname, parts.port))
    sock.sendall(get_request(url, headers))
    peak = before
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        peak = max(peak, rss_kb(stack.daphne_pid))
        if Run.objects.get(uuid=created["run_uuid"]).is_finished:  # not over HTTP: no load on the server
            break
        time.sleep(0.1)
    time.sleep(STALL_TIMEOUT + 3)  # still not reading: the server must cut us off by now
    peak = max(peak, rss_kb(stack.daphne_pid))
    received = b""
    sock.settimeout(5)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionError):
        pass
    sock.close()
    time.sleep(1.0)
    return {
        "tokens": tokens,
        "bytes_written_by_run": tokens * 1024,
        "stall_timeout_s": STALL_TIMEOUT,
        "rss_growth_peak_mb": round((peak - before) / 1024, 1),
        "rss_growth_after_mb": round((rss_kb(stack.daphne_pid) - before) / 1024, 1),
        "bytes_the_reader_got": len(received),
        "reader_cut_off_before_finish": b'"type":"finish"' not in received,
    }


def rest_scenario(stack: Stack, fx: Fixture, fake: Any, requests: int) -> dict[str, Any]:
    """GET a 50-message transcript page; POST messages."""
    from chat.models import Message, Session
    from runs.models import Run

    headers = {"Authorization": f"Bearer {fx.key}"}
    fake.replace_script(fx.agent_model, [("text", "A short reply.")])
    created = httpx.post(
        f"{stack.base_url}/api/v1/sessions", headers=headers, json={"text": "hi", "agent": fx.agent_model}, timeout=30
    ).json()
    session = Session.objects.get(uuid=created["uuid"])
    Message.objects.bulk_create([Message(session=session, sender_role="user", text=f"m{i}") for i in range(48)])
    url = f"{created['messages_url']}?page_size=50"
    timings, floor = [], []
    with httpx.Client(timeout=30) as client:
        for _ in range(min(requests, 200)):  # the floor of any request here: Django under Daphne, 2 round trips
            start = time.perf_counter()
            client.get(f"{stack.base_url}/healthz").raise_for_status()
            floor.append(time.perf_counter() - start)
        started = time.perf_counter()
        for _ in range(requests):
            start = time.perf_counter()
            client.get(url, headers=headers).raise_for_status()
            timings.append(time.perf_counter() - start)
        get_rps = requests / (time.perf_counter() - started)
        posts = []
        for _ in range(min(requests, 100)):
            Run.objects.filter(session=session).update(status=Run.Status.SUCCEEDED)
            start = time.perf_counter()
            client.post(created["messages_url"], headers=headers, json={"text": "again"})
            posts.append(time.perf_counter() - start)
    return {
        "get_messages_rps": round(get_rps, 1),
        "get_messages_ms": summary_ms(timings),
        "post_message_ms": summary_ms(posts),
        "healthz_floor_ms": summary_ms(floor),
    }


def db_load_scenario(fx: Fixture, fake: Any) -> dict[str, Any]:
    """Queries and rows written by one turn of 50 and of 500 tokens (must not grow).

    The turn runs in this process (``execute_run``, as a worker would) so every query is
    counted; the task a new session enqueues is not sent."""
    from unittest import mock

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.models import Agent
    from chat.services import start_session
    from genie.auth import resolve_bearer_key
    from runs import loop, tasks
    from runs.models import RunEvent

    caller = resolve_bearer_key(fx.key, session_secret=None)
    agent = Agent.objects.get(handle=fx.agent_model)
    out = {}
    for tokens in (50, 500):
        fake.replace_script(fx.agent_model, [*[("text", "tok ")] * tokens])
        with mock.patch.object(tasks.execute_run, "delay"):
            _, run, _ = start_session(caller=caller, agent=agent, text="hi")
        with CaptureQueriesContext(connection) as queries:
            loop.execute_run(run.pk)
        statements = [q["sql"].lstrip().split(" ", 1)[0].upper() for q in queries.captured_queries]
        out[f"{tokens}_tokens"] = {
            "queries": len(statements),
            "writes": sum(verb in {"INSERT", "UPDATE", "DELETE"} for verb in statements),
            "event_rows": RunEvent.objects.filter(run=run).count(),
        }
    return out


def machine_facts() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def burst_rows(bursts: dict[str, Any], row: Any) -> None:
    for label, burst in bursts.get("genie", {}).items():
        if "error" in burst:
            row(f"burst of {label} new chats", burst["error"])
            continue
        ttft = burst["ttft_ms"]
        row(f"burst of {label}: TTFT p50/p99/max ms", f"{ttft['p50']} / {ttft['p99']} / {ttft['max']}")
        row(
            "  queued->started, started->1st token p99 ms",
            f"{burst['queued_to_started_ms']['p99']}, {burst['started_to_first_token_ms']['p99']}",
        )
        row(
            "  CPU ms per turn: to first tokens, whole turn",
            f"{burst['cpu_ms_per_turn_to_first_tokens']}, {burst['cpu_ms_per_turn']}",
        )
        floor = bursts.get("fake_llm_direct", {}).get(label, {}).get("ttft_ms")
        if floor:
            row("  floor: fake model direct TTFT p50/p99/max ms", f"{floor['p50']} / {floor['p99']} / {floor['max']}")
        peer_burst = bursts.get("peer", {}).get(label)
        if peer_burst and "error" not in peer_burst:
            ttft = peer_burst["ttft_ms"]
            row("  peer: TTFT p50/p99/max ms", f"{ttft['p50']} / {ttft['p99']} / {ttft['max']}")


def capacity_rows(capacity: dict[str, Any], row: Any) -> None:
    settings = capacity.get("worker_settings", {})
    for name, layout in capacity.get("layouts", {}).items():
        row(
            f"capacity {name} ({layout['daphnes']} Daphne + {layout['workers']} worker, CPUs {layout['server_cpus']})",
            f"{layout['highest_rate_within_limit']}/s within p99 {capacity['ttft_limit_ms']:.0f} ms, "
            f"{layout['streams_open_at_that_rate']} streams open",
        )
        row(
            "  worker threads, prefetch",
            f"{settings.get('concurrency_per_worker')}, {settings.get('prefetch_multiplier')}",
        )
        for rate, measured in layout["rates"].items():
            if "error" in measured:
                row(f"  {rate}/s", measured["error"])
                continue
            ttft = measured["ttft_ms"]
            row(f"  {rate}/s: TTFT p50/p99/max ms", f"{ttft['p50']} / {ttft['p99']} / {ttft['max']}")
            row(
                "    open max, finished, CPU ms/turn, cores busy",
                f"{measured['streams_open_max']}, {measured['finished']}/{measured['turns']}, "
                f"{measured['cpu_ms_per_turn']}, {measured['server_cores_busy']}",
            )


def print_table(results: dict[str, Any], output: Path) -> None:
    def row(name: str, value: Any) -> None:
        print(f"  {name:<52} {value}")

    print("\nGenie benchmarks", results["machine"]["commit"][:10])
    ttft = results["ttft"]
    added = ttft["added_ttft_ms"]
    row("added TTFT p50/p95/p99 ms", f"{added['p50']} / {added['p95']} / {added['p99']}")
    row("  floor: fake LLM direct p50 ms", ttft["floor_ttft_ms"]["p50"])
    row("  p50 ms: POST, queued, to 1st token, to client", " / ".join(map(str, ttft["breakdown_p50_ms"].values())))
    celery_floor = ttft["celery_hop_floor_ms"]
    row("  floor: no-op Celery task publish->start p50/p99 ms", f"{celery_floor['p50']} / {celery_floor['p99']}")
    streamed = ttft["added_ttft_streaming_post_ms"]
    row("added TTFT p50/p95/p99 ms, streaming POST", f"{streamed['p50']} / {streamed['p95']} / {streamed['p99']}")
    if "scale_out" in results:
        out = results["scale_out"]
        row(
            "scale-out: added TTFT p50/p99 ms (POST on A, stream on B)",
            f"{out['added_ttft_ms']['p50']} / {out['added_ttft_ms']['p99']}",
        )
        row(
            "  token relay p50/p99 ms across processes",
            f"{out['token_latency_ms']['p50']} / {out['token_latency_ms']['p99']}",
        )
        row(
            "  resumed on the other process: complete, duplicated",
            f"{out['resumed_complete']}/{out['turns']}, {out['duplicated_events']}",
        )
    for run in results["relay"]:
        label = (
            f"{run.get('streams')} streams ({run.get('sessions')} runs x {run.get('readers_per_session')}"
            f", {run.get('tokens_per_second_per_stream')}/s)"
        )
        if "error" in run:
            row(label, run["error"])
            continue
        lat = run["token_latency_ms"]
        row(f"token relay p50/p99 ms @ {label}", f"{lat['p50']} / {lat['p99']}")
        row(
            "  relay CPU us/event, events/s, finished",
            f"{run['relay_cpu_us_per_event']}, {run['events_per_s']}, {run['streams_finished']}/{run['streams']}",
        )
        row("  worker CPU us per token (whole turn)", run["producer_cpu_us_per_token"])
    hop = results["redis_floor"]["redis_hop_ms"]
    row("  floor: Redis XADD->XREAD hop p50/p99 ms", f"{hop['p50']} / {hop['p99']}")
    idle = results["idle_streams"]
    row(
        f"idle streams: {idle['idle_streams']} open, KB each, idle CPU",
        f"{idle['rss_kb_per_stream']}, {idle['idle_cpu_share_of_a_core']} of a core",
    )
    stalled = results["stalled_reader"]
    row(
        "stalled reader: RSS growth peak / after MB, cut off",
        f"{stalled['rss_growth_peak_mb']} / {stalled['rss_growth_after_mb']}, {stalled['reader_cut_off_before_finish']}",
    )
    rest = results["rest"]
    row("GET messages (50) req/s, p99 ms", f"{rest['get_messages_rps']}, {rest['get_messages_ms']['p99']}")
    row("POST message p50/p99 ms", f"{rest['post_message_ms']['p50']} / {rest['post_message_ms']['p99']}")
    row("  floor: GET /healthz p50/p99 ms", f"{rest['healthz_floor_ms']['p50']} / {rest['healthz_floor_ms']['p99']}")
    for name, load in results["db_load"].items():
        row(
            f"DB per turn of {name.replace('_', ' ')}",
            f"{load['queries']} queries, {load['writes']} writes, {load['event_rows']} event rows",
        )
    burst_rows(results.get("burst", {}), row)
    capacity_rows(results.get("capacity", {}), row)
    if "peer" in results:
        peer = results["peer"]
        added = peer["ttft"]["added_ttft_ms"]
        row("peer resumable-stream: added TTFT p50/p95/p99 ms", f"{added['p50']} / {added['p95']} / {added['p99']}")
        for run in peer["relay"]:
            label = (
                f"{run.get('streams')} streams ({run.get('sessions')} x {run.get('readers_per_session')}"
                f", {run.get('tokens_per_second_per_stream')}/s)"
            )
            if "error" in run:
                row(f"  peer {label}", run["error"])
                continue
            lat = run["token_latency_ms"]
            row(
                f"  peer relay p50/p99 ms, CPU us/event @ {label}",
                f"{lat['p50']} / {lat['p99']}, {run['relay_cpu_us_per_event']}",
            )
    print(f"\nwritten to {output}")


SOAK_RATE = 5.0  # new turns a second
SOAK_SAMPLE_SECONDS = 30.0
SOAK_TURN_TIMEOUT = 60.0  # a turn's whole stream (heartbeats keep a stuck one open for ever)
# Memory "levels off" when the last third of the soak grows at most this many MB per 1,000
# turns, or at most a quarter of the first third's rate: a process that keeps growing at
# its start-up rate is leaking; one that settles has filled its caches and pools.
SOAK_FLAT_MB_PER_1000 = 0.5


def slope_per_1000(samples: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares slope of ``key`` (MB) against turns done, in MB per 1,000 turns."""
    points = [(s["turns_done"], s[key]) for s in samples]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return round(sum((x - mean_x) * (y - mean_y) for x, y in points) / spread * 1000, 3)


def soak_verdict(first: float | None, last: float | None) -> str:
    if first is None or last is None:
        return "too short to say"
    if last <= SOAK_FLAT_MB_PER_1000 or (first > 0 and last <= first / 4):
        return "levels off"
    return "still growing"


async def soak_turn(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], done: dict[str, int]
) -> None:
    """One soak turn: a streaming POST read to its end, counted in ``done``."""
    try:
        await asyncio.wait_for(read_turn(client, url, headers, body, done), SOAK_TURN_TIMEOUT)
    except TimeoutError:  # a turn left queued for good would hold its connection for ever
        done["timed_out"] += 1


async def read_turn(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], done: dict[str, int]
) -> None:
    finished = False
    try:
        async with client.stream("POST", url, headers=headers, json=body) as response:
            if response.status_code != 200:
                done["failed"] += 1
                return
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"type":"finish"' in line.replace(" ", ""):
                    finished = True
    except httpx.HTTPError:
        done["failed"] += 1
        return
    done["turns"] += 1
    done["unfinished"] += not finished


async def soak_scenario(stack: Stack, fx: Fixture, fake: Any, minutes: float, rate: float) -> dict[str, Any]:
    """Steady turns for ``minutes``: a new session every 1/``rate`` s, each read to its
    ``finish`` on its own streaming POST, with the scripted model's short reply (12 deltas).
    Every SOAK_SAMPLE_SECONDS: the RSS of each worker and of Daphne, turns done, the
    machine's load. Then the slope of memory per 1,000 turns in the first and last third of
    the samples, and whether it levels off."""
    fake.replace_script(fx.agent_model, [("text", "Hello "), *[("delay", 0.01), ("text", "tok ")] * 11])
    headers = {"Authorization": f"Bearer {fx.key}", "Accept": "text/event-stream"}
    body = {"text": "hi", "agent": fx.agent_model}
    worker_pids = [process.proc.pid for process in stack.processes[1:]]
    done = {"turns": 0, "failed": 0, "unfinished": 0, "timed_out": 0}
    samples: list[dict[str, Any]] = []
    machine = machine_facts()  # the commit the stack started from
    started = time.monotonic()
    deadline = started + minutes * 60

    def sample() -> None:
        workers = [rss_kb(pid) / 1024 for pid in worker_pids]
        samples.append(
            {
                "seconds": round(time.monotonic() - started, 1),
                "turns_done": done["turns"],
                "worker_rss_mb": round(sum(workers), 1),
                "each_worker_rss_mb": [round(mb, 1) for mb in workers],
                "daphne_rss_mb": round(rss_kb(stack.daphne_pid) / 1024, 1),
                "load_1m": round(os.getloadavg()[0], 2),
            }
        )
        print(f"soak {samples[-1]}", file=sys.stderr, flush=True)

    sample()
    next_sample = started + SOAK_SAMPLE_SECONDS
    tasks: set[asyncio.Task] = set()
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
        next_turn = time.monotonic()
        while (now := time.monotonic()) < deadline:
            if now >= next_turn:
                task = asyncio.create_task(soak_turn(client, f"{stack.base_url}/api/v1/sessions", headers, body, done))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_turn += 1 / rate
            if now >= next_sample:
                sample()
                next_sample += SOAK_SAMPLE_SECONDS
            await asyncio.sleep(max(0.0, min(next_turn, next_sample) - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=60)
    sample()
    elapsed = time.monotonic() - started
    third = max(len(samples) // 3, 2)
    first, last = samples[:third], samples[-third:]
    slopes = {
        key: {"first_third": slope_per_1000(first, key), "last_third": slope_per_1000(last, key)}
        for key in ("worker_rss_mb", "daphne_rss_mb")
    }
    loads = [s["load_1m"] for s in samples]
    return {
        "machine": machine,
        "minutes": minutes,
        "turns_per_second_asked": rate,
        "turns_per_second_done": round(done["turns"] / elapsed, 2),
        "turns": done["turns"],
        "failed": done["failed"],
        "without_finish": done["unfinished"],
        "timed_out": done["timed_out"],
        "task_queue": stack.env.get("GENIE_TASK_QUEUE", "celery"),
        "workers": len(worker_pids),
        "db_pool_size_per_process": int(stack.env.get("GENIE_DB_POOL_SIZE", "20")),
        "sample_seconds": SOAK_SAMPLE_SECONDS,
        "load_1m": {"min": min(loads), "median": percentile(loads, 50), "max": max(loads)},
        "slope_mb_per_1000_turns": slopes,
        "verdict": {key: soak_verdict(v["first_third"], v["last_third"]) for key, v in slopes.items()},
        "samples": samples,
    }


def run_soak(args: argparse.Namespace, stack: Stack, fx: Fixture, fake: Any) -> None:
    soak = asyncio.run(soak_scenario(stack, fx, fake, args.soak_minutes, args.soak_rate))
    merge_results(args.output, "soak", soak)
    print(json.dumps({k: v for k, v in soak.items() if k != "samples"}, indent=1))


def merge_results(output: Path, key: str, value: Any) -> None:
    """Write ``value`` under ``key`` into the results file, keeping its other keys."""
    results = json.loads(output.read_text()) if output.exists() else {}
    results[key] = value
    output.write_text(json.dumps(results, indent=2))


QUICK = {
    "turns": 5,
    "relay": [(1, 1, 20, 0.01), (2, 3, 20, 0.01)],
    "idle": 20,
    "stalled_tokens": 200,
    "requests": 20,
    "floor": 50,
    "burst": ["2", "2+2"],
    "burst_tokens": 5,
    "burst_warm_up": 2,
    "capacity_rates": [2.0],
    "capacity_seconds": 3.0,
    "capacity_tokens": 5,
    "capacity_layouts": ["one-core"],
}
FULL = {
    "turns": 200,
    # (runs, readers per run, tokens per stream, seconds between tokens)
    "relay": [
        (1, 1, 200, 0.01),
        (20, 1, 200, 0.01),
        (100, 1, 100, 0.05),
        (100, 10, 100, 0.1),
        (10, 100, 100, 0.1),  # 1,000 streams again, with a tenth of the worker load
        (10, 100, 200, 0.005),  # saturation: what one process delivers at most
    ],
    "idle": 10_000,
    "stalled_tokens": 20_000,
    "requests": 500,
    "floor": 2000,
    # new chats started at once; N+N: N more the moment the last N ended (their titles in flight)
    "burst": ["10", "100", "50", "50+50"],
    "burst_tokens": 50,
    "burst_warm_up": 8,
    # steady new chats a second, each rate for capacity_seconds; a reply of 50 tokens at 4/s
    # keeps each stream open ~12.5 s, so R a second hold ~12.5 R streams open
    "capacity_rates": [2.0, 4.0, 6.0, 8.0, 10.0],
    "capacity_seconds": 30.0,
    "capacity_tokens": 50,
    "capacity_layouts": list(LAYOUTS),
}


def chosen_sizes(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(QUICK if args.quick else FULL)
    if args.burst:
        sizes["burst"] = args.burst
    for name in ("capacity_rates", "capacity_seconds", "capacity_tokens", "capacity_layouts"):
        if getattr(args, name):
            sizes[name] = getattr(args, name)
    if args.relay:
        sizes["relay"] = [(int(r), int(n), int(t), float(i)) for r, n, t, i in (v.split("x") for v in args.relay)]
    return sizes


def parse_args() -> tuple[argparse.Namespace, dict[str, Any]]:
    """The command line, and the scenarios' sizes it asks for."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--only", nargs="*", default=[], help="run only these scenarios (ttft relay idle ...)")
    parser.add_argument(
        "--relay", nargs="*", default=[], help="relay sizes as RUNSxREADERSxTOKENSxINTERVAL, e.g. 20x10x200x0.01"
    )
    parser.add_argument("--burst", nargs="*", default=[], help="burst sizes, e.g. 10 50 50+50")
    parser.add_argument(
        "--capacity-rates", nargs="*", type=float, default=[], help="capacity: new chats a second, e.g. 2 4 6 8 10"
    )
    parser.add_argument("--capacity-seconds", type=float, default=None, help="capacity: how long each rate runs")
    parser.add_argument(
        "--capacity-tokens", type=int, default=None, help="capacity: tokens per reply (4 a second; 50 by default)"
    )
    parser.add_argument(
        "--capacity-layouts",
        nargs="*",
        choices=list(LAYOUTS),
        default=[],
        help="capacity: one-core (one Daphne and one worker pinned to one core, the load client and fake model "
        "on the other), two-cores (two Daphnes and two workers on both cores)",
    )
    parser.add_argument(
        "--worker-concurrency", type=int, default=50, help="each Celery worker's threads (--concurrency)"
    )
    parser.add_argument(
        "--worker-prefetch",
        type=int,
        default=1,
        help="Celery's prefetch multiplier for the workers (GENIE_WORKER_PREFETCH): tasks reserved per thread",
    )
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=None,
        help="run only the soak: steady turns for this long, worker and Daphne memory sampled (merged into "
        "the results file under 'soak', its other keys kept)",
    )
    parser.add_argument("--soak-rate", type=float, default=SOAK_RATE, help="the soak's new turns a second")
    args = parser.parse_args()
    return args, chosen_sizes(args)


def new_chat_results(
    stack: Stack, fx: Fixture, fake: Any, sizes: dict[str, Any], run: Any, wanted: Any
) -> dict[str, Any]:
    """New chats (issue 29): bursts of them at once, and steady rates of them (capacity)."""
    results = {}
    if wanted("burst"):
        results["burst"] = run("burst", lambda: bursts_beside_peer(stack, fx, fake, sizes))
    if wanted("capacity"):
        results["capacity"] = run("capacity", lambda: capacity_scenario(stack, fx, fake, sizes))
    return results


def peer_results(fake: Any, sizes: dict[str, Any], run: Any) -> dict[str, Any]:
    """The peer's figures (``{"peer": …}``), or none where it cannot start."""
    started = start_peer(fake)
    if started is None:
        return {}
    peer, peer_url, peer_model = started
    try:
        target = peer_target(peer, peer_url, peer_model)
        return {
            "peer": {
                "name": "vercel resumable-stream 2.2.13 (Node, node-redis), bench/peer/server.mjs",
                "ttft": run(
                    "peer ttft", lambda: asyncio.run(peer_ttft_scenario(peer_url, peer_model, fake, sizes["turns"]))
                ),
                "relay": [
                    run(
                        f"peer relay {s}x{r}",
                        lambda s=s, r=r, t=t, i=i: relay_scenario(
                            target, fake, sessions=s, readers=r, tokens=t, interval=i
                        ),
                    )
                    for s, r, t, i in sizes["relay"]
                ],
            }
        }
    finally:
        peer.stop()


def main() -> None:
    args, sizes = parse_args()
    # Stopped with SIGTERM (a long soak cut short), the stack's processes stop with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genie.settings")
    sys.path.insert(0, str(ROOT))
    from tests.fakellm import FakeLLM

    os.environ.setdefault("GENIE_EGRESS_ALLOW", "127.0.0.1")  # the fake model listens on loopback
    prepare_database(dict(os.environ))
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    fake = FakeLLM().start()
    stack = start_stack(workers=2, concurrency=args.worker_concurrency, prefetch=args.worker_prefetch)

    def wanted(name: str) -> bool:
        return not args.only or name in args.only

    results: dict[str, Any] = {
        "machine": machine_facts(),
        "sizes": sizes,
        "worker_settings": stack.worker_settings,
        "seconds": {},
    }

    def run(name: str, scenario: Any) -> Any:
        started = time.perf_counter()
        value = scenario()
        results["seconds"][name] = round(time.perf_counter() - started, 1)
        print(f"{name}: {results['seconds'][name]} s", file=sys.stderr, flush=True)
        return value

    try:
        fx = make_fixture(fake.base_url)
        if args.soak_minutes is not None:  # the soak alone: it is long, and memory is its figure
            run_soak(args, stack, fx, fake)
            return
        if wanted("ttft"):
            results["ttft"] = run("ttft", lambda: asyncio.run(ttft_scenario(stack, fx, fake, sizes["turns"])))
            results["ttft"]["celery_hop_floor_ms"] = run(
                "celery floor", lambda: celery_hop_floor(stack, sizes["turns"])
            )
            # Beside the single-process figures: the same turns across two Daphne processes.
            results["scale_out"] = run(
                "scale-out", lambda: asyncio.run(scale_out_scenario(stack, fx, fake, sizes["turns"]))
            )
        if wanted("relay"):
            genie = genie_target(stack, fx)
            results["relay"] = [
                run(
                    f"relay {s}x{r}",
                    lambda s=s, r=r, t=t, i=i: relay_scenario(genie, fake, sessions=s, readers=r, tokens=t, interval=i),
                )
                for s, r, t, i in sizes["relay"]
            ]
            results["redis_floor"] = run("redis floor", lambda: redis_hop_floor(sizes["floor"]))
        results.update(new_chat_results(stack, fx, fake, sizes, run, wanted))
        if wanted("peer"):
            results.update(peer_results(fake, sizes, run))
        if wanted("stalled"):
            stack.fresh_daphne()
            results["stalled_reader"] = run(
                "stalled", lambda: stalled_reader_scenario(stack, fx, fake, sizes["stalled_tokens"])
            )
        if wanted("rest"):
            results["rest"] = run("rest", lambda: rest_scenario(stack, fx, fake, sizes["requests"]))
        if wanted("db"):
            results["db_load"] = run("db", lambda: db_load_scenario(fx, fake))
        # Last: ten thousand connections closing at once would disturb what follows.
        if wanted("idle"):
            stack.fresh_daphne()
            results["idle_streams"] = run("idle", lambda: idle_streams_scenario(stack, fx, fake, sizes["idle"]))
    finally:
        stack.stop()
        fake.stop()
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the results file, keeping what this run did not measure (the soak, or the
    scenarios a subset left out, with their own ``seconds``); print the table (the figures
    alone for a subset)."""
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    if args.only and previous:
        # A subset's figures carry their own machine and commit; the file's top-level ones
        # stay those of the run that measured the rest.
        for key in results["seconds"]:
            if isinstance(results.get(key), dict):
                results[key] = {**results[key], "machine": results["machine"]}
        results = {key: value for key, value in results.items() if key not in {"machine", "sizes"}}
    seconds = {**previous.get("seconds", {}), **results["seconds"]}
    results = {**previous, **results, "seconds": seconds}
    args.output.write_text(json.dumps(results, indent=2))
    if not args.only:
        print_table(results, args.output)
    else:
        print(json.dumps({k: v for k, v in results.items() if k not in {"machine", "sizes"}}, indent=1))


if __name__ == "__main__":
    main()
