"""The benchmark harness keeps working: one quick run at tiny sizes (no timing assertions)."""

from __future__ import annotations

import json
import os

import pytest

from tests.processes import run_python

pytestmark = pytest.mark.live


@pytest.mark.timeout(330)  # the run's own limit (300 s) comes first, and ends its processes
def test_bench_quick_run_writes_its_results(tmp_path):
    output = tmp_path / "results.json"
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres:postgres@127.0.0.1:5432/genie_bench_smoke",
        "REDIS_URL": "redis://127.0.0.1:6379/13",
    }

    done = run_python("-m", "bench", "--quick", "--output", str(output), env=env, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(output.read_text())
    scenarios = {
        "ttft",
        "relay",
        "redis_floor",
        "idle_streams",
        "stalled_reader",
        "rest",
        "db_load",
        "burst",
        "capacity",
        "worker_settings",
        "machine",
    }
    assert scenarios <= set(results)
    assert all(burst["finished"] == burst["turns"] for burst in results["burst"]["genie"].values())
    capacity = results["capacity"]["layouts"]["one-core"]["rates"]["2.0"]
    assert capacity["finished"] == capacity["turns"] == 6
    assert all(run["streams_finished"] == run["streams"] for run in results["relay"])
    assert results["relay"][0]["events_relayed"] > 0
    assert results["ttft"]["celery_hop_floor_ms"]["n"] == results["sizes"]["turns"]  # every no-op task started
    assert "added TTFT" in done.stdout
