"""Benchmarks of the streaming spine: ``python -m bench [--quick]`` (or ``make bench``).

Starts everything on loopback (Daphne with production settings, two Celery workers,
PostgreSQL and Redis as configured, the scripted fake LLM from ``tests/fakellm.py``), runs
each scenario beside its floor, prints a table and writes ``bench/results.json``. Every
loop is bounded in count and time. Benchmarks are not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
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


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(values, q) * 1000, 3) for q in (50, 95, 99)} | {"n": len(values)}


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
    processes: list[Any] = field(default_factory=list)

    @property
    def daphne_pid(self) -> int:
        return self.processes[0].proc.pid

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def start_stack(workers: int) -> Stack:
    """Daphne with production settings (DEBUG=0) and ``workers`` Celery worker processes."""
    from tests.processes import start_daphne, start_worker

    env = dict(os.environ)
    env.update(
        DEBUG="0",
        SECRET_KEY="bench-" + uuid.uuid4().hex,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
        GENIE_GENERATE_TITLES="0",
        GENIE_LOG_LEVEL="WARNING",
        GENIE_RATE_PER_KEY="",
        GENIE_RATE_PUBLISHABLE_IP="",
        DJANGO_SETTINGS_MODULE="genie.settings",
    )
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    daphne, url = start_daphne(env, logs / "daphne.log")
    stack = Stack(base_url=url, processes=[daphne])
    stack.processes += [start_worker(env, logs / f"worker{n}.log", concurrency=50) for n in range(workers)]
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
        team=team, handle=model, name="Bench", provider="openai", model=model, base_url=fake_base_url, temperature=0
    )
    _, key = create_access_token(team=team, kind=AccessToken.Kind.SECRET, name="bench")
    return Fixture(key=key, agent_model=model)


async def first_delta_after(client: httpx.AsyncClient, url: str, headers: dict[str, str], start: float) -> float:
    async with client.stream("GET", url, headers=headers) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"text-delta"' in line:
                return time.perf_counter() - start
    return float("nan")


async def ttft_scenario(stack: Stack, fx: Fixture, fake: Any, turns: int) -> dict[str, Any]:
    """POST sessions → first text-delta over SSE, against the same client reading the fake LLM."""
    fake.replace_script(fx.agent_model, [("text", "hello"), ("text", " world")])
    headers = {"Authorization": f"Bearer {fx.key}"}
    genie, floor = [], []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(turns):
            start = time.perf_counter()
            created = (
                await client.post(
                    f"{stack.base_url}/api/v1/sessions", headers=headers, json={"text": "hi", "agent": fx.agent_model}
                )
            ).json()
            genie.append(await first_delta_after(client, created["stream_url"], headers, start))
            start = time.perf_counter()
            async with client.stream(
                "POST",
                f"{fake.base_url}/chat/completions",
                json={"model": fx.agent_model, "stream": True, "messages": []},
            ) as response:
                async for line in response.aiter_lines():
                    if '"content": "hello"' in line:
                        floor.append(time.perf_counter() - start)
                        break
    added = [g - f for g, f in zip(genie, floor, strict=False)]
    return {"genie_ttft_ms": summary_ms(genie), "floor_ttft_ms": summary_ms(floor), "added_ttft_ms": summary_ms(added)}


async def token_latency_scenario(stack: Stack, fx: Fixture, fake: Any, streams: int, tokens: int) -> dict[str, Any]:
    """Each token carries its send time; the SSE client measures its arrival."""
    fake.replace_script(fx.agent_model, [("delay", 0.3), *[("stamp", None), ("delay", 0.01)] * tokens])
    headers = {"Authorization": f"Bearer {fx.key}"}
    latencies: list[float] = []
    cpu_before = cpu_seconds(stack.daphne_pid)

    async def one(client: httpx.AsyncClient) -> int:
        created = (
            await client.post(
                f"{stack.base_url}/api/v1/sessions", headers=headers, json={"text": "hi", "agent": fx.agent_model}
            )
        ).json()
        seen = 0
        async with client.stream("GET", created["stream_url"], headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"text-delta"' in line:
                    sent = float(json.loads(line[6:])["delta"])
                    latencies.append(time.time() - sent)
                    seen += 1
        return seen

    limits = httpx.Limits(max_connections=streams * 2 + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.perf_counter()
        counts = await asyncio.wait_for(asyncio.gather(*(one(client) for _ in range(streams))), timeout=300)
        elapsed = time.perf_counter() - started
    relayed = sum(counts)
    cpu = cpu_seconds(stack.daphne_pid) - cpu_before
    return {
        "streams": streams,
        "events_relayed": relayed,
        "token_latency_ms": summary_ms(latencies),
        "relay_cpu_us_per_event": round(cpu / max(relayed, 1) * 1e6, 1),
        "events_per_s": round(relayed / elapsed, 1),
    }


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


async def idle_streams_scenario(stack: Stack, fx: Fixture, fake: Any, count: int) -> dict[str, Any]:
    """Open ``count`` idle SSE streams on one long run; RSS per stream in the Daphne process."""
    fake.replace_script(fx.agent_model, [("delay", 1.0), ("text", "x"), *[("delay", 1.0)] * 120])
    headers = {"Authorization": f"Bearer {fx.key}"}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count + 10)) as client:
        created = (
            await client.post(
                f"{stack.base_url}/api/v1/sessions", headers=headers, json={"text": "hi", "agent": fx.agent_model}
            )
        ).json()
        await asyncio.sleep(0.5)
        before = rss_kb(stack.daphne_pid)
        opened: list[Any] = []
        started = time.perf_counter()
        for _ in range(count):
            cm = client.stream("GET", created["stream_url"], headers=headers)
            response = await cm.__aenter__()
            opened.append((cm, response))
        open_seconds = time.perf_counter() - started
        await asyncio.sleep(1.0)
        after = rss_kb(stack.daphne_pid)
        for cm, _ in opened:
            await cm.__aexit__(None, None, None)
    return {
        "idle_streams": count,
        "open_seconds": round(open_seconds, 2),
        "rss_kb_per_stream": round((after - before) / count, 1),
        "daphne_rss_mb": round(after / 1024, 1),
    }


def rest_scenario(stack: Stack, fx: Fixture, requests: int) -> dict[str, Any]:
    """GET a 50-message transcript page; POST messages."""
    from chat.models import Message, Session
    from runs.models import Run

    headers = {"Authorization": f"Bearer {fx.key}"}
    created = httpx.post(
        f"{stack.base_url}/api/v1/sessions", headers=headers, json={"text": "hi", "agent": fx.agent_model}, timeout=30
    ).json()
    session = Session.objects.get(uuid=created["uuid"])
    Message.objects.bulk_create([Message(session=session, sender_role="user", text=f"m{i}") for i in range(48)])
    url = f"{created['messages_url']}?page_size=50"
    timings = []
    with httpx.Client(timeout=30) as client:
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
    }


def db_load_scenario(stack: Stack, fx: Fixture, fake: Any) -> dict[str, Any]:
    """Transactions and rows written per turn, for 50 and 500 tokens (must not grow)."""
    from django.db import connection

    def stats() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT xact_commit, tup_inserted + tup_updated FROM pg_stat_database WHERE datname = current_database()"
            )
            return cursor.fetchone()

    headers = {"Authorization": f"Bearer {fx.key}"}
    out = {}
    for tokens in (50, 500):
        fake.replace_script(fx.agent_model, [*[("text", "tok ")] * tokens])
        time.sleep(1.0)  # pg_stat_database lags by up to PGSTAT_MIN_INTERVAL
        before = stats()
        created = httpx.post(
            f"{stack.base_url}/api/v1/sessions",
            headers=headers,
            json={"text": "hi", "agent": fx.agent_model},
            timeout=30,
        ).json()
        deadline = time.monotonic() + 60
        while httpx.get(created["run_url"], headers=headers).json()["status"] in {"queued", "running"}:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(1.5)
        after = stats()
        out[f"{tokens}_tokens"] = {"transactions": after[0] - before[0], "rows_written": after[1] - before[1]}
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


def print_table(results: dict[str, Any], output: Path) -> None:
    def row(name: str, value: Any) -> None:
        print(f"  {name:<44} {value}")

    print("\nGenie benchmarks", results["machine"]["commit"][:10])
    ttft = results["ttft"]
    row(
        "added TTFT p50/p95/p99 ms",
        f"{ttft['added_ttft_ms']['p50']} / {ttft['added_ttft_ms']['p95']} / {ttft['added_ttft_ms']['p99']}",
    )
    row("  (floor: fake LLM direct p50 ms)", ttft["floor_ttft_ms"]["p50"])
    for run in results["token_latency"]:
        lat = run["token_latency_ms"]
        row(f"token relay p50/p99 ms @ {run['streams']} streams", f"{lat['p50']} / {lat['p99']}")
        row(
            f"  relay CPU µs/event, events/s @ {run['streams']}",
            f"{run['relay_cpu_us_per_event']}, {run['events_per_s']}",
        )
    row(
        "  (floor: Redis XADD→XREAD hop p50/p99 ms)",
        f"{results['redis_floor']['redis_hop_ms']['p50']} / {results['redis_floor']['redis_hop_ms']['p99']}",
    )
    idle = results["idle_streams"]
    row(f"idle streams: {idle['idle_streams']} open, KB each", idle["rss_kb_per_stream"])
    rest = results["rest"]
    row("GET messages (50) req/s, p99 ms", f"{rest['get_messages_rps']}, {rest['get_messages_ms']['p99']}")
    row("POST message p50/p99 ms", f"{rest['post_message_ms']['p50']} / {rest['post_message_ms']['p99']}")
    for name, load in results["db_load"].items():
        row(
            f"DB per turn of {name.replace('_', ' ')}",
            f"{load['transactions']} transactions, {load['rows_written']} rows",
        )
    print(f"\nwritten to {output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = (
        {"turns": 5, "streams": [1, 3], "tokens": 20, "idle": 20, "requests": 20, "floor": 50}
        if args.quick
        else {"turns": 200, "streams": [1, 20, 100], "tokens": 200, "idle": 1000, "requests": 500, "floor": 2000}
    )

    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "genie.settings")
    sys.path.insert(0, str(ROOT))
    from tests.fakellm import FakeLLM

    prepare_database(dict(os.environ))
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    fake = FakeLLM().start()
    stack = start_stack(workers=2)
    try:
        fx = make_fixture(fake.base_url)
        results: dict[str, Any] = {"machine": machine_facts(), "sizes": sizes}
        results["ttft"] = asyncio.run(ttft_scenario(stack, fx, fake, sizes["turns"]))
        results["token_latency"] = [
            asyncio.run(token_latency_scenario(stack, fx, fake, n, sizes["tokens"])) for n in sizes["streams"]
        ]
        results["redis_floor"] = redis_hop_floor(sizes["floor"])
        results["idle_streams"] = asyncio.run(idle_streams_scenario(stack, fx, fake, sizes["idle"]))
        results["rest"] = rest_scenario(stack, fx, sizes["requests"])
        results["db_load"] = db_load_scenario(stack, fx, fake)
    finally:
        stack.stop()
        fake.stop()
    args.output.write_text(json.dumps(results, indent=2))
    print_table(results, args.output)


if __name__ == "__main__":
    main()
