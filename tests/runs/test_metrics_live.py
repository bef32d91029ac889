"""/metrics on a real Daphne: the streams it holds open and the events it relayed, as the
deployment's figures (kept in Redis), and the turn in the histograms once it ended."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.live


def scrape(base_url: str) -> dict[str, float]:
    """The unlabelled samples and the succeeded runs' duration count."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    figures = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if not sample.labels or sample.labels == {"status": "succeeded"}:
                figures[sample.name] = sample.value
    return figures


def test_metrics_report_an_open_stream_then_the_events_it_relayed(live):
    live.script([("delay", 0.3), ("text", "Hello "), ("delay", 1.5), ("text", "world")])
    before = scrape(live.base_url)
    created = live.start_session("Hi")
    received = []

    headers = {**live.headers, "Accept": "text/event-stream"}
    with httpx.stream("GET", created["stream_url"], headers=headers, timeout=30) as response:
        lines = response.iter_lines()
        for line in lines:  # up to the first token: the reply is still being written
            if line.startswith("data:"):
                received.append(json.loads(line[5:])["type"])
                if received[-1] == "text-delta":
                    break
        while_open = scrape(live.base_url)
        received += [json.loads(line[5:])["type"] for line in lines if line.startswith("data:")]
    live.wait_run(created["run_uuid"])
    deadline = time.monotonic() + 5  # the server sees the client's end a moment after it
    while (after := scrape(live.base_url))["genie_open_streams"] >= while_open["genie_open_streams"]:
        assert time.monotonic() < deadline, "the stream is still counted open"
        time.sleep(0.1)

    assert received[-1] == "finish"
    assert while_open["genie_open_streams"] >= 1
    relayed = after["genie_events_relayed_total"] - before["genie_events_relayed_total"]
    assert relayed >= len(received)
    assert after["genie_run_duration_seconds_count"] >= before["genie_run_duration_seconds_count"] + 1
    assert after["genie_run_time_to_first_token_seconds_count"] > before["genie_run_time_to_first_token_seconds_count"]
