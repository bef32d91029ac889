"""The OpenAI-compatible endpoint with the real ``openai`` package as the client, against
the live stack (Daphne, a Celery worker, the scripted model, a real webhook receiver)."""

from __future__ import annotations

import json

import openai
import pytest

from chat.models import Session
from runs.models import Run

pytestmark = pytest.mark.live


@pytest.fixture
def client(live) -> openai.OpenAI:
    return live.openai_client()


@pytest.fixture
def warm(live) -> None:
    live.warm_up()


def model_requests_with(live, text: str) -> list[dict]:
    """The model calls whose last message is ``text`` (a title request is not one)."""
    return [body for body in live.fake_llm.requests[live.agent.model] if body["messages"][-1]["content"] == text]


def test_a_plain_completion_is_stored_as_a_session_with_the_conversation_before_it(live, client, warm):
    live.script([("text", "Juniper.")])

    raw = client.chat.completions.with_raw_response.create(
        model=live.agent.handle,
        messages=[
            {"role": "system", "content": "Talk like a pirate."},
            {"role": "user", "content": "Name a cat."},
            {"role": "assistant", "content": "Miso."},
            {"role": "user", "content": "Another one?"},
        ],
    )
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.model == live.agent.handle
    assert completion.choices[0].message.content == "Juniper."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.completion_tokens == 1
    assert completion.usage.total_tokens == 8
    session = Session.objects.get(uuid=raw.headers["genie-session"])
    run = session.runs.get()
    assert completion.id == f"chatcmpl-{run.uuid.hex}"
    assert list(session.messages.order_by("created_at", "id").values_list("sender_role", "text")) == [
        ("user", "Name a cat."),
        ("agent", "Miso."),
        ("user", "Another one?"),
        ("agent", "Juniper."),
    ]
    (sent,) = model_requests_with(live, "Another one?")
    conversation = [(m["role"], m["content"]) for m in sent["messages"] if m["role"] != "system"]
    assert conversation == [("user", "Name a cat."), ("assistant", "Miso."), ("user", "Another one?")]
    system = [m["content"] for m in sent["messages"] if m["role"] == "system"]
    assert system[0] == live.agent.instructions  # the agent's instructions stay first
    assert system[-1] == "Talk like a pirate."  # the client's follow them


def test_a_streamed_completion_with_usage(live, client):
    live.script([("text", "Miso, "), ("delay", 0.1), ("text", "Juniper.")])

    with client.chat.completions.with_streaming_response.create(
        model=live.agent.handle,
        messages=[{"role": "user", "content": "Two cat names"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        session_uuid = response.headers["genie-session"]
        chunks = list(response.parse())

    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Miso, Juniper."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 2)
    assert {c.id for c in chunks} == {f"chatcmpl-{Run.objects.get(session__uuid=session_uuid).uuid.hex}"}
    assert Session.objects.get(uuid=session_uuid).messages.get(sender_role="agent").text == "Miso, Juniper."


def test_genie_session_continues_the_session(live, client, warm):
    live.script([("text", "Miso.")])
    first = client.chat.completions.with_raw_response.create(
        model=live.agent.handle, messages=[{"role": "user", "content": "Name a cat."}]
    )
    session_uuid = first.headers["genie-session"]
    live.fake_llm.replace_script(live.agent.model, [("text", "Juniper.")])

    second = client.chat.completions.with_raw_response.create(
        model=live.agent.handle,
        messages=[
            {"role": "user", "content": "Name a cat."},
            {"role": "assistant", "content": "Miso."},
            {"role": "user", "content": "Another?"},
        ],
        extra_headers={"Genie-Session": session_uuid},
    )

    assert second.headers["genie-session"] == session_uuid
    assert second.parse().choices[0].message.content == "Juniper."
    session = Session.objects.get(uuid=session_uuid)
    assert list(session.messages.order_by("created_at", "id").values_list("text", flat=True)) == [
        "Name a cat.",
        "Miso.",
        "Another?",
        "Juniper.",
    ]
    (sent,) = model_requests_with(live, "Another?")
    assert [m["content"] for m in sent["messages"] if m["role"] != "system"] == ["Name a cat.", "Miso.", "Another?"]


def test_an_unknown_model_is_not_found_and_models_lists_the_agents(live, client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])

    assert raised.value.code == "model_not_found"
    assert raised.value.type == "invalid_request_error"
    assert [model.id for model in client.models.list()] == [live.agent.handle]
    assert client.models.retrieve(live.agent.handle).owned_by == live.agent.team.slug


def test_n_greater_than_one_is_a_bad_request(live, client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=live.agent.handle, messages=[{"role": "user", "content": "Hi"}], n=2)

    assert raised.value.param == "n"
    assert not Session.objects.filter(agent=live.agent).exists()


def test_a_webhook_tool_runs_on_the_server_and_the_client_sees_the_text(live, client, receiver):
    live.agent.tools = [
        {
            "name": "weather",
            "kind": "webhook",
            "url": receiver.url,
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    live.agent.save()
    receiver.secret = live.agent.webhook_secret
    live.script(
        [("tool_call", {"id": "a", "name": "weather", "arguments": '{"city": "Oslo"}'})],
        [("text", "Sunny in Oslo.")],
    )

    stream = client.chat.completions.create(
        model=live.agent.handle, messages=[{"role": "user", "content": "Weather in Oslo?"}], stream=True
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Sunny in Oslo."
    assert all(c.choices[0].delta.tool_calls is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [call["input"] for call in receiver.calls] == [{"city": "Oslo"}]


def test_a_tool_needing_approval_says_what_it_awaits_while_the_run_waits(live, client, receiver, warm):
    live.agent.tools = [{"name": "refund", "kind": "webhook", "url": receiver.url, "requires_approval": True}]
    live.agent.save()
    live.script([("text", "Checking. "), ("tool_call", {"id": "a", "name": "refund", "arguments": "{}"})])

    raw = client.chat.completions.with_raw_response.create(
        model=live.agent.handle, messages=[{"role": "user", "content": "Refund order 7"}]
    )
    completion = raw.parse()

    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content.startswith(
        "Checking. \n\n[Waiting for approval of the tool call `refund`"
    )
    assert completion.choices[0].message.tool_calls is None
    run = Run.objects.get(session__uuid=raw.headers["genie-session"])
    assert raw.headers["genie-run-uuid"] == str(run.uuid)
    assert raw.headers["genie-run-status"] == "requires_action"
    assert run.status == Run.Status.REQUIRES_ACTION
    assert receiver.calls == []


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_streamed_client_tool_call_and_its_streamed_continuation(live, client):
    live.script(
        [("text", "Let me look. "), ("tool_call", {"id": "m", "name": "get_weather", "arguments": '{"city": "Oslo"}'})],
        [("text", "Sunny "), ("text", "in Oslo.")],
    )
    question = {"role": "user", "content": "Weather in Oslo?"}

    with client.chat.completions.with_streaming_response.create(
        model=live.agent.handle, messages=[question], tools=[WEATHER], stream=True
    ) as response:
        session_uuid = response.headers["genie-session"]
        first = list(response.parse())

    assert "".join(c.choices[0].delta.content or "" for c in first) == "Let me look. "
    (call,) = [d for c in first for d in c.choices[0].delta.tool_calls or []]
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Oslo"})
    assert first[-1].choices[0].finish_reason == "tool_calls"
    # The results are sent at once: the run may not be paused yet (its pause takes them).

    answered = [
        question,
        {"role": "assistant", "content": "Let me look. ", "tool_calls": [call.model_dump(exclude={"index"})]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
    ]
    second = list(
        client.chat.completions.create(model=live.agent.handle, messages=answered, tools=[WEATHER], stream=True)
    )

    assert second[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in second) == "Sunny in Oslo."
    assert second[-1].choices[0].finish_reason == "stop"
    assert {c.id for c in second} == {c.id for c in first}  # one run
    run = Run.objects.get(session__uuid=session_uuid)
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == "Let me look. Sunny in Oslo."


def test_three_turns_sent_the_stateless_way_are_one_session(live, client, warm):
    messages = []
    for turn in range(3):
        live.fake_llm.replace_script(live.agent.model, [("text", f"Answer {turn}.")])
        messages.append({"role": "user", "content": f"Question {turn}?"})
        raw = client.chat.completions.with_raw_response.create(model=live.agent.handle, messages=messages)
        messages.append({"role": "assistant", "content": raw.parse().choices[0].message.content})

    session = Session.objects.get(uuid=raw.headers["genie-session"])
    assert Session.objects.filter(agent=live.agent).exclude(title="Warm-up").count() == 1
    assert session.messages.count() == 6
    assert session.title == "Question 0?"


def test_a_failed_turn_raises_in_the_streaming_client(live, client):
    live.script([("status", 500)])

    stream = client.chat.completions.create(
        model=live.agent.handle, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as raised:
        list(stream)

    assert raised.value.type == "server_error"
