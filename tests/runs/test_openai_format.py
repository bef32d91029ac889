"""OpenAI's chunk stream as the relay writes it, event by event (no I/O)."""

from __future__ import annotations

import json

from runs.events import StreamEvent
from runs.formats import ChatCompletionChunkFormat

RUN = "0b6c6f1e-5a8c-4d35-9b3e-0c8f6a2d9e11"


def event(seq: int, type_: str, **data) -> StreamEvent:
    return StreamEvent(seq, RUN, type_, json.dumps({"type": type_, **data}))


def written(wire: ChatCompletionChunkFormat, events: list[StreamEvent]) -> tuple[list, bytes]:
    """The data lines written for ``events`` (parsed), up to where the format ends, and the epilogue."""
    lines = []
    for item in events:
        for line in wire.frame(item).split("\n\n"):
            if line:
                assert line.startswith("data: ")
                lines.append(json.loads(line.removeprefix("data: ")))
        if wire.ends_after(item):
            break
    return lines, wire.epilogue(complete=True)


TURN = [
    event(1, "start", messageId="m"),
    event(2, "start-step"),
    event(3, "text-start", id="t"),
    event(4, "text-delta", id="t", delta="Miso, "),
    event(5, "tool-input-available", toolCallId="c", toolName="weather", input={}),
    event(6, "tool-output-available", toolCallId="c", output={"sunny": True}),
    event(7, "text-delta", id="t", delta="Juniper."),
    event(8, "text-end", id="t"),
    event(9, "finish-step"),
    event(10, "finish", messageMetadata={"usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
]


def test_a_turn_is_role_content_finish_usage_then_done():
    lines, end = written(ChatCompletionChunkFormat(model="helper", include_usage=True), TURN)

    deltas = [line["choices"][0]["delta"] if line["choices"] else None for line in lines]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Miso, "}, {"content": "Juniper."}, {}, None]
    assert [line["choices"][0]["finish_reason"] for line in lines[:-1]] == [None, None, None, "stop"]
    assert lines[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert {line["id"] for line in lines} == {"chatcmpl-" + RUN.replace("-", "")}
    assert {line["object"] for line in lines} == {"chat.completion.chunk"}
    assert {line["model"] for line in lines} == {"helper"}
    assert end == b"data: [DONE]\n\n"


def test_without_include_usage_there_is_no_usage_chunk():
    lines, _ = written(ChatCompletionChunkFormat(model="helper"), TURN)

    assert all(line["choices"] for line in lines)
    assert lines[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_reply_cut_by_the_token_cap_finishes_with_length():
    finish = event(4, "finish", finishReason="length")
    lines, _ = written(ChatCompletionChunkFormat(model="helper"), [*TURN[:4], finish])

    assert lines[-1]["choices"][0]["finish_reason"] == "length"


def test_a_failed_turn_ends_with_an_openai_error_and_no_done():
    failing = [
        *TURN[:4],
        event(5, "error", errorText="The model is down."),
        event(6, "finish-step"),
        event(7, "finish"),
    ]

    lines, end = written(ChatCompletionChunkFormat(model="helper", include_usage=True), failing)

    assert lines[-1] == {
        "error": {"message": "The model is down.", "type": "server_error", "param": None, "code": None}
    }
    assert end == b""


def test_calls_of_the_clients_tools_are_tool_call_deltas_and_the_step_ends_with_tool_calls():
    paused = [
        *TURN[:4],
        event(5, "tool-input-available", toolCallId="c1", toolName="get_weather", input={"city": "Oslo"}),
        event(
            6, "data-client-tool-call", data={"call_id": "c1", "tool_name": "get_weather", "input": {"city": "Oslo"}}
        ),
        event(7, "data-client-tool-call", data={"call_id": "c2", "tool_name": "get_time", "input": {}}),
        event(8, "finish-step"),
        event(9, "text-delta", id="t", delta="never sent"),
    ]

    wire = ChatCompletionChunkFormat(model="helper", client_tools=frozenset({"get_weather", "get_time"}))
    lines, end = written(wire, paused)

    deltas = [line["choices"][0]["delta"] for line in lines]
    assert deltas[-3]["tool_calls"] == [
        {
            "index": 0,
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
    assert deltas[-2]["tool_calls"] == [
        {"index": 1, "id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    ]
    assert lines[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert end == b"data: [DONE]\n\n"


def test_a_request_for_approval_says_what_it_awaits_and_ends_with_stop():
    paused = [
        *TURN[:4],
        event(5, "tool-approval-request", approvalId="c", toolCallId="c"),
        event(6, "data-approval-required", data={"call_id": "c", "tool_name": "refund", "approval_url": "http://h/a"}),
        event(7, "finish-step"),
    ]

    wire = ChatCompletionChunkFormat(model="helper")
    lines, end = written(wire, paused)

    contents = [line["choices"][0]["delta"].get("content") for line in lines]
    assert contents[-2] == "\n\n[Waiting for approval of the tool call `refund`: POST http://h/a]"
    assert lines[-1]["choices"][0]["finish_reason"] == "stop"
    assert [line["choices"][0]["finish_reason"] for line in lines].count("stop") == 1
    assert end == b"data: [DONE]\n\n"


def test_a_continuation_starts_with_the_role():
    wire = ChatCompletionChunkFormat(model="helper")

    lines, _ = written(wire, [event(12, "start-step"), event(13, "text-delta", id="t", delta="Sunny.")])

    assert [line["choices"][0]["delta"] for line in lines] == [
        {"role": "assistant", "content": ""},
        {"content": "Sunny."},
    ]


def test_a_stream_cut_short_says_so_in_openais_error_shape():
    wire = ChatCompletionChunkFormat(model="helper")

    tail = wire.epilogue(complete=False).decode()

    assert json.loads(tail.removeprefix("data: "))["error"]["code"] == "stream_interrupted"
    assert wire.preamble() == b""


def test_a_sign_in_the_turn_waits_for_says_where_and_ends_with_stop():
    paused = [
        *TURN[:4],
        event(
            5, "data-connection-auth-required", data={"call_id": "c", "provider": "github", "link_url": "http://h/l"}
        ),
        event(6, "finish-step"),
    ]

    lines, _ = written(ChatCompletionChunkFormat(model="helper"), paused)

    assert (
        lines[-2]["choices"][0]["delta"]["content"] == "\n\n[Waiting for the user to sign in to `github`: http://h/l]"
    )
    assert lines[-1]["choices"][0]["finish_reason"] == "stop"
