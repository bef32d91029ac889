"""Files and context across processes: real HTTP to Daphne, a real Celery worker, the
fake LLM recording what the worker sent."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from chat.models import Compaction
from tests.files import png

pytestmark = pytest.mark.live


def read_post_stream(live, path: str, body: dict) -> list[tuple[float, dict]]:
    """Each chunk of a POST's SSE answer with the time it arrived."""
    headers = {**live.headers, "Accept": "text/event-stream"}
    with httpx.stream("POST", f"{live.base_url}/api/v1/{path}", json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200, response.read()
        return [(time.monotonic(), json.loads(line[6:])) for line in response.iter_lines() if line.startswith("data: ")]


def turn(live, session: str, text: str, **body) -> list:
    response = live.api("POST", f"sessions/{session}/messages", json={"text": text, **body})
    assert response.status_code == 201, response.text
    live.wait_run(response.json()["run_uuid"])
    return live.read_stream(
        f"{live.base_url}/api/v1/sessions/{session}/runs/{response.json()['run_uuid']}/stream"
    ).events


def test_attached_files_reach_the_model_and_finish_reports_the_context(live):
    live.agent.vision = True
    live.agent.save()
    session = live.start_session("Hello")["uuid"]
    live.wait_run(live.api("GET", f"sessions/{session}/runs").json()["results"][0]["uuid"])
    image = png()
    notes = live.api("POST", f"sessions/{session}/uploads", files={"file": ("notes.txt", b"The code is 1234")})
    pixel = live.api("POST", f"sessions/{session}/uploads", files={"file": ("pixel.png", image, "text/plain")})
    assert (notes.status_code, pixel.status_code) == (201, 201)
    assert pixel.json()["content_type"] == "image/png"
    assert live.api("GET", pixel.json()["url"].split("/api/v1/", 1)[1]).content == image

    events = turn(live, session, "Read these", file_ids=[notes.json()["file_id"], pixel.json()["file_id"]])

    content = live.fake_llm.requests[live.agent.model][-1]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Read these"}
    assert content[1]["text"].endswith("\nThe code is 1234")
    assert content[3]["type"] == "image_url"
    assert content[3]["image_url"]["url"].startswith("data:image/png;base64,")
    finish = events[-1].data
    assert finish["type"] == "finish"
    usage = live.api("GET", f"sessions/{session}/context-usage").json()
    assert finish["messageMetadata"]["context"] == usage
    assert usage["breakdown"]["attachments"] > 765


def test_compaction_end_to_end(live):
    session = live.start_session("I live in Lyon " + "and I like cats " * 10)["uuid"]
    live.wait_run(live.api("GET", f"sessions/{session}/runs").json()["results"][0]["uuid"])
    for n in range(2):
        turn(live, session, f"question {n} " + "words " * 30)
    before = live.fake_llm.requests[live.agent.model][-1]["messages"]
    live.script([("text", "Lives in Lyon,"), ("delay", 1.0), ("text", " likes cats.")])

    timed = read_post_stream(live, f"sessions/{session}/compact", {"keep_last": 2})

    chunks = [chunk for _, chunk in timed]
    assert [chunk["type"] for chunk in chunks] == [
        "start",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "data-compaction",
        "finish",
    ]
    assert timed[3][0] - timed[2][0] > 0.5  # streamed as the model writes, not all at the end
    assert chunks[5]["data"]["messages_compacted"] == 4
    assert Compaction.objects.get(session__uuid=session).summary == "Lives in Lyon, likes cats."
    turn(live, session, "Where do I live?")
    after = live.fake_llm.requests[live.agent.model][-1]["messages"]
    assert after[1] == {"role": "system", "content": "Summary of the earlier conversation:\nLives in Lyon, likes cats."}
    assert after[-1] == {"role": "user", "content": "Where do I live?"}
    assert len(json.dumps(after)) < len(json.dumps(before))
    assert live.api("GET", f"sessions/{session}/messages").json()["count"] == 8


def test_a_compaction_is_written_by_the_worker_and_resumes_on_its_location(live):
    session = live.start_session("I live in Lyon " + "and I like cats " * 10)["uuid"]
    live.wait_run(live.api("GET", f"sessions/{session}/runs").json()["results"][0]["uuid"])
    turn(live, session, "question " + "words " * 30)
    live.script([("text", "Lives in Lyon,"), ("delay", 1.5), ("text", " likes cats.")])  # GENIE_PROVIDER_TIMEOUT 2
    url = f"{live.base_url}/api/v1/sessions/{session}/compact"

    first = live.read_stream(url, method="POST", json={"keep_last": 1}, max_events=3)  # then the client drops
    busy = live.api("POST", f"sessions/{session}/messages", json={"text": "Hi"})  # while the model writes
    rest = live.read_stream(first.headers["location"], last_event_id=first.ids[-1])
    runs = live.api("GET", f"sessions/{session}/runs").json()["results"]

    assert first.types == ["start", "text-start", "text-delta"]
    error = busy.json()["error"]
    assert (busy.status_code, error["code"]) == (409, "run_active")
    # The web process answered while the compaction's model was still writing, in the worker.
    assert (error["details"]["run_uuid"], error["details"]["status"]) == (first.headers["genie-run-uuid"], "running")
    assert rest.types == ["text-delta", "text-end", "data-compaction", "finish"]
    assert first.ids + rest.ids == list(range(first.ids[0], first.ids[0] + 7))
    assert first.text + rest.text == "Lives in Lyon, likes cats."
    stored = Compaction.objects.get(session__uuid=session)
    assert (stored.summary, str(stored.run.uuid)) == ("Lives in Lyon, likes cats.", first.headers["genie-run-uuid"])
    assert first.headers["genie-run-uuid"] not in {run["uuid"] for run in runs}  # runs lists turns
