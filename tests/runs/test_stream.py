"""The seed's flow over real HTTP: Daphne, a Celery worker, Redis, PostgreSQL, a fake LLM."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest

from chat.models import Message
from genie.models import Member
from runs import services, tasks
from runs.models import Run, RunEvent
from runs.services import queue_run
from tests.factories import MessageFactory, SessionFactory

pytestmark = pytest.mark.live


def test_session_streams_reply_and_stores_it(live):
    live.script([("delay", 0.3), ("text", "Miso, "), ("text", "Juniper, Nimbus, Pickles, and Poppy.")])
    created = live.start_session("Generate 5 random cat names")

    read = live.read_stream(created["stream_url"])

    assert read.status == 200
    assert read.headers["content-type"] == "text/event-stream"
    assert read.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert read.headers["cache-control"] == "no-cache"
    assert read.comments[0] == "ok"
    assert read.retry == "1000"
    assert read.types == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert read.ids == sorted(read.ids)
    assert len(set(read.ids)) == len(read.ids)
    agent_message = Message.objects.get(session__uuid=created["uuid"], sender_role="agent")
    assert read.events[2].data["id"] == f"pending-message-{agent_message.uuid}"
    assert read.text == "Miso, Juniper, Nimbus, Pickles, and Poppy."
    assert agent_message.text == read.text
    assert agent_message.status == Message.Status.COMPLETE
    run = Run.objects.get(uuid=created["run_uuid"])
    assert run.status == Run.Status.SUCCEEDED
    assert run.created_at < run.started_at < run.first_token_at < run.finished_at
    stored = RunEvent.objects.filter(run=run).order_by("seq")
    assert [i for e in stored for i in range(e.first_seq, e.seq + 1)] == read.ids
    assert "".join(e.data["delta"] for e in stored if e.type == "text-delta") == read.text


def test_reconnect_after_finish_is_204(live):
    live.script([("delay", 0.3), ("text", "Hi")])
    created = live.start_session()
    read = live.read_stream(created["stream_url"])

    again = live.read_stream(created["stream_url"], last_event_id=read.ids[-1])
    fresh = live.read_stream(created["stream_url"])

    assert again.status == 204
    assert fresh.status == 204


def test_resume_with_last_event_id_gives_every_event_once_in_order(live):
    live.script([("delay", 0.3), *[("text", f"t{i} ") for i in range(12)], ("delay", 0.3)])
    created = live.start_session()

    first = live.read_stream(created["stream_url"], max_events=4)
    rest = live.read_stream(created["stream_url"], last_event_id=first.ids[-1])

    ids = first.ids + rest.ids
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert (first.types + rest.types)[-1] == "finish"
    assert first.text + rest.text == "".join(f"t{i} " for i in range(12))


def test_late_subscriber_gets_the_whole_reply(live):
    # "two " after a pause: the early reader gets "one " alone, not a stored row merging both.
    live.script([("text", "one "), ("delay", 0.3), ("text", "two "), ("delay", 0.6), ("text", "three")])
    created = live.start_session()
    early = live.read_stream(created["stream_url"], max_events=4)  # start, start-step, text-start, a delta

    late = live.read_stream(created["stream_url"])

    assert early.text == "one "
    assert late.types[0] == "start"
    assert late.text == "one two three"
    assert late.ids[0] == early.ids[0]


def test_follow_up_message_continues_the_session_ids(live):
    live.script([("delay", 0.2), ("text", "first")], [("delay", 0.2), ("text", "second")])
    created = live.start_session()
    first = live.read_stream(created["stream_url"])

    response = live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "more"})
    second = live.read_stream(response.json()["stream_url"])

    assert response.status_code == 201
    assert second.ids[0] == first.ids[-1] + 1
    assert second.events[2].data["id"] == f"pending-message-{response.json()['uuid']}"
    assert second.text == "second"
    prompt = live.fake_llm.turn_requests(live.agent.model)[-1]["messages"]
    assert [m["content"] for m in prompt if m["role"] != "system"] == ["Hello", "first", "more"]


def test_last_event_id_spans_runs(live):
    live.script([("delay", 0.2), ("text", "first")], [("delay", 0.2), ("text", "second")])
    created = live.start_session()
    first = live.read_stream(created["stream_url"], max_events=2)
    live.wait_run(created["run_uuid"])
    live.api("POST", f"sessions/{created['uuid']}/messages", json={"text": "more"})

    rest = live.read_stream(created["stream_url"], last_event_id=first.ids[-1])

    assert rest.types.count("finish") == 2
    assert rest.text == "firstsecond"
    assert rest.ids == list(range(first.ids[-1] + 1, first.ids[-1] + 1 + len(rest.ids)))


def test_two_sessions_stream_at_once(live):
    from concurrent.futures import ThreadPoolExecutor

    live.script([("delay", 0.3), ("text", "a"), ("delay", 0.2), ("text", "b")])
    sessions = [live.start_session(f"hi {n}") for n in range(2)]

    with ThreadPoolExecutor(2) as pool:
        reads = list(pool.map(lambda s: live.read_stream(s["stream_url"]), sessions))

    assert [r.text for r in reads] == ["ab", "ab"]
    assert all(r.types[-1] == "finish" for r in reads)


def test_stop_mid_stream_keeps_partial_text(live):
    live.script([("text", "partial "), *[("delay", 0.1), ("text", "x")] * 100])
    created = live.start_session()
    head = live.read_stream(created["stream_url"], max_events=3)

    stop = live.api("POST", f"sessions/{created['uuid']}/stream/stop")
    tail = live.read_stream(created["stream_url"], last_event_id=head.ids[-1], timeout=5)
    again = live.api("POST", f"sessions/{created['uuid']}/stream/stop")

    assert stop.json() == {
        "uuid": created["uuid"],
        "stopped": True,
        "run_uuid": created["run_uuid"],
        "status": "stopped",
    }
    assert tail.types[-3:] == ["abort", "finish-step", "finish"]
    assert again.json()["stopped"] is False
    run = live.wait_run(created["run_uuid"])
    assert run.status == Run.Status.STOPPED
    assert run.agent_message.status == Message.Status.STOPPED
    assert run.agent_message.text.startswith("partial ")
    assert run.agent_message.text == head.text + tail.text


def test_stop_while_the_model_only_sends_keep_alives(live):
    """A provider that is alive but quiet (SSE comments only, for 20 s) does not hold a
    stop back until its next token."""
    live.script([("delay", 0.2), ("text", "thinking"), ("quiet", 20.0), ("text", "never sent")])
    created = live.start_session()
    head = live.read_stream(created["stream_url"], last_event_id=0, max_events=3)

    live.api("POST", f"sessions/{created['uuid']}/stream/stop")
    tail = live.read_stream(created["stream_url"], last_event_id=head.ids[-1], timeout=10)

    assert tail.types[-3:] == ["abort", "finish-step", "finish"]
    run = live.wait_run(created["run_uuid"], timeout=5)
    assert run.status == Run.Status.STOPPED
    assert run.agent_message.text == "thinking"


def test_disconnect_does_not_stop_the_run(live):
    live.script([("delay", 0.2), ("text", "a"), ("delay", 0.3), ("text", "b")])
    created = live.start_session()
    live.read_stream(created["stream_url"], max_events=2)

    run = live.wait_run(created["run_uuid"])

    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "ab"


def test_blank_title_is_generated_after_the_first_reply(live):
    live.script([("delay", 0.2), ("text", "Miso")], [("text", '"Cat names"')])
    created = live.start_session("Generate 5 random cat names", title="")
    live.read_stream(created["stream_url"])

    deadline = time.monotonic() + 10
    while (title := live.api("GET", f"sessions/{created['uuid']}").json()["title"]) == "":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    assert title == "Cat names"


def test_a_title_the_user_set_is_kept(live):
    live.script([("text", "Miso")])
    created = live.start_session("Generate cat names", title="Mine")
    live.wait_run(created["run_uuid"])

    assert live.api("GET", f"sessions/{created['uuid']}").json()["title"] == "Mine"


def test_stalled_reader_is_disconnected_and_resumes_without_loss(live):
    import socket
    from urllib.parse import urlsplit

    chunk = "x" * 8000  # 20 MB in all: more than the kernel's socket buffers hold
    live.script([("delay", 0.3), *[("text", chunk)] * 2500])
    created = live.start_session()
    url = urlsplit(created["stream_url"])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((url.hostname, url.port))
    sock.sendall(f"GET {url.path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {live.key}\r\n\r\n".encode())

    live.wait_run(created["run_uuid"], timeout=60)  # never reading meanwhile
    received = b""
    sock.settimeout(5)
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        pass  # aborted by the server: what it had buffered for us is gone
    except TimeoutError:
        pass  # still open: the assertions below tell what arrived
    sock.close()

    assert b'"type":"finish"' not in received  # cut off before the end, not buffered without bound
    frames = [dict(line.split(b": ", 1) for line in f.split(b"\n") if b": " in line) for f in received.split(b"\n\n")]
    complete = [f for f in frames[:-1] if b"id" in f and b"data" in f]
    last_id = int(complete[-1][b"id"])
    seen = "".join(json.loads(f[b"data"]).get("delta", "") for f in complete)
    rest = live.read_stream(created["stream_url"], last_event_id=last_id)
    assert rest.types[-1] == "finish"
    assert rest.ids[0] > last_id
    assert seen + rest.text == chunk * 2500  # stored deltas come merged, the text exactly once


def test_ui_context_reaches_the_agent(live):
    live.script([("text", "You are on the pricing page.")])
    created = live.start_session("Where am I?", ui_context={"currentPage": "/pricing"})
    live.wait_run(created["run_uuid"])

    prompt = live.fake_llm.requests[live.agent.model][0]["messages"]

    assert any("/pricing" in m["content"] for m in prompt if m["role"] == "system")
    assert prompt[-1] == {"role": "user", "content": "Where am I?"}


def test_a_quiet_stream_sends_heartbeats_until_its_run_ends(live):
    """No event for over two heartbeat intervals (2 s in the live stack): the stream says
    ``: ping`` meanwhile, then ends with the run's finish."""
    owner = Member.objects.get(team=live.agent.team).user
    session = SessionFactory(agent=live.agent, owner=owner)
    user_message = MessageFactory(session=session, text="Anyone there?")
    with mock.patch.object(tasks.execute_run, "delay"):  # queued, and no worker will start it
        run = queue_run(session=session, user_message=user_message)
    url = f"{live.base_url}/api/v1/sessions/{session.uuid}/runs/{run.uuid}/stream"
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(live.read_stream, url)
        time.sleep(5)
        assert live.api("POST", f"sessions/{session.uuid}/stream/stop").status_code == 200
        read = reading.result(timeout=30)
    assert "ping" in read.comments
    assert read.types == ["start", "abort", "finish"]


def test_a_run_ended_in_postgresql_but_never_published_still_finishes_live_streams(live):
    """The worker died after its run's end was committed, before publishing it: a quiet
    stream finds the stored end at its next heartbeat and finishes."""
    owner = Member.objects.get(team=live.agent.team).user
    session = SessionFactory(agent=live.agent, owner=owner)
    user_message = MessageFactory(session=session, text="Anyone there?")
    with mock.patch.object(tasks.execute_run, "delay"):  # queued, and no worker will start it
        run = queue_run(session=session, user_message=user_message)
    url = f"{live.base_url}/api/v1/sessions/{session.uuid}/runs/{run.uuid}/stream"
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(live.read_stream, url)
        time.sleep(1)
        with mock.patch.object(services, "_after_run_end"):  # stored, never published
            services.end_run(run=run, status=Run.Status.FAILED, error_code="worker_lost", error_message="gone")
        read = reading.result(timeout=30)
    assert read.types == ["start", "error", "finish"]
    assert [event.type for event in RunEvent.objects.filter(run=run).order_by("seq")] == read.types
