"""Provider failures end the run ``failed`` with a safe ``error`` event and a stored code;
transient failures before the first token are retried."""

from __future__ import annotations

import socket

import pytest

from chat.models import Message
from runs.models import Run
from runs.providers.openai import sse_lines

pytestmark = pytest.mark.live


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ([("status", 401)], "provider_auth_failed"),
        ([("status", 429)], "provider_rate_limited"),
        ([("status", 503)], "provider_error"),
        ([("text", "half"), ("malformed", None)], "provider_bad_response"),
        ([("delay", 3), ("text", "too late")], "provider_timeout"),
    ],
)
def test_provider_failure_fails_the_run_with_an_error_event(live, reply, code):
    live.script(reply)
    created = live.start_session()

    read = live.read_stream(created["stream_url"], last_event_id=0)
    run = live.wait_run(created["run_uuid"])

    assert read.types[-3:] == ["error", "finish-step", "finish"]
    assert "scripted" not in read.events[-3].data["errorText"]
    assert run.status == Run.Status.FAILED
    assert run.error_code == code
    assert run.agent_message.status == Message.Status.FAILED


def test_unreachable_provider_fails_the_run(live):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    live.agent.base_url = f"http://127.0.0.1:{closed_port}/v1"
    live.agent.save()
    created = live.start_session()

    read = live.read_stream(created["stream_url"], last_event_id=0)
    run = live.wait_run(created["run_uuid"])

    assert read.types[-3:] == ["error", "finish-step", "finish"]
    assert run.error_code == "provider_unreachable"


def test_transient_failure_before_the_first_token_is_retried(live):
    live.script([("delay", 0.2), ("status", 503)], [("text", "recovered")])
    created = live.start_session()

    read = live.read_stream(created["stream_url"], last_event_id=0)
    run = live.wait_run(created["run_uuid"])

    assert read.text == "recovered"
    assert "error" not in read.types
    assert run.status == Run.Status.SUCCEEDED
    assert len(live.fake_llm.requests[live.agent.model]) == 2


def test_failure_after_the_first_token_keeps_the_partial_text(live):
    live.script([("delay", 0.2), ("text", "partial"), ("drop", None)])
    created = live.start_session()

    read = live.read_stream(created["stream_url"], last_event_id=0)
    run = live.wait_run(created["run_uuid"])

    assert read.types[-3:] == ["error", "finish-step", "finish"]
    assert run.status == Run.Status.FAILED
    assert run.agent_message.text == "partial"
    assert len(live.fake_llm.requests[live.agent.model]) == 1


def test_sse_lines_joins_a_line_split_across_reads_and_drops_carriage_returns():
    pieces = [b'data: {"a"', b": 1}\r\n", b"\r\n: keep-alive\n\ndata: [DO", b"NE]\n", b"data: tail"]

    assert list(sse_lines(pieces)) == [b'data: {"a": 1}', b"", b": keep-alive", b"", b"data: [DONE]", b"data: tail"]
