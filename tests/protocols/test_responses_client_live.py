"""OpenAI's Responses API with the real clients (the ``openai`` package's ``responses`` and
the OpenAI Agents SDK with its default Responses model) against the live stack (Daphne, a
Celery worker, the scripted model, a real webhook receiver)."""

from __future__ import annotations

import asyncio
import time

import openai
import pydantic
import pytest

from chat.models import Session
from runs.models import Run, ToolCall

pytestmark = pytest.mark.live


@pytest.fixture
def client(live) -> openai.OpenAI:
    return live.openai_client()


@pytest.fixture
def warm(live) -> None:
    live.warm_up()


def model_requests_with(live, text: str) -> list[dict]:
    return [body for body in live.fake_llm.requests[live.agent.model] if body["messages"][-1]["content"] == text]


def wait_status(client, response_id: str, statuses: set[str], timeout: float = 20) -> openai.types.responses.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.responses.retrieve(response_id)
        if response.status in statuses:
            return response
        time.sleep(0.1)
    raise TimeoutError(f"{response_id} never reached {statuses}")


def test_a_plain_response_is_a_run_of_a_new_session(live, client, warm):
    live.script([("text", "Juniper.")])

    response = client.responses.create(model=live.agent.handle, input="Name a cat.", metadata={"ticket": "7"})

    run = Run.objects.get(session__agent=live.agent, user_message__text="Name a cat.")
    assert response.id == f"resp_{run.uuid.hex}"
    assert response.status == "completed"
    assert response.output_text == "Juniper."
    assert response.model == live.agent.handle
    assert response.metadata == {"ticket": "7"}
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 1)
    assert run.session.messages.get(sender_role="agent").text == "Juniper."
    assert client.responses.retrieve(response.id).output_text == "Juniper."


def test_a_streamed_response_through_the_clients_own_stream_helper(live, client):
    live.script([("text", "Miso, "), ("delay", 0.1), ("text", "Juniper.")])

    with client.responses.stream(model=live.agent.handle, input="Two cat names") as stream:
        events = list(stream)
        final = stream.get_final_response()

    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Miso, Juniper."
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers))
    assert final.output_text == "Miso, Juniper."
    assert final.status == "completed"
    assert Run.objects.get(uuid=final.id.removeprefix("resp_")).status == Run.Status.SUCCEEDED


def test_background_then_retrieve_then_resume_the_stream_from_a_sequence_number(live, client):
    live.script([("text", "one "), ("delay", 0.3), ("text", "two "), ("delay", 0.3), ("text", "three")])

    started = client.responses.create(model=live.agent.handle, input="Count", background=True)
    assert started.status == "queued"
    first_part = []
    with client.responses.retrieve(started.id, stream=True) as stream:
        for event in stream:
            first_part.append(event)
            if event.type == "response.output_text.delta":
                break  # the connection drops after the first token
    resumed = list(client.responses.retrieve(started.id, stream=True, starting_after=first_part[-1].sequence_number))
    done = wait_status(client, started.id, {"completed"})

    events = first_part + resumed
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers))  # nothing twice
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "one two three"
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert done.output_text == "one two three"
    whole = list(client.responses.retrieve(started.id, stream=True))  # replayed from PostgreSQL
    assert "".join(e.delta for e in whole if e.type == "response.output_text.delta") == "one two three"
    assert whole[-1].response == done


def test_previous_response_id_chains_the_session(live, client, warm):
    live.script([("text", "Miso.")], [("text", "Juniper.")])
    first = client.responses.create(model=live.agent.handle, input="Name a cat.")

    second = client.responses.create(model=live.agent.handle, input="Another?", previous_response_id=first.id)

    assert second.output_text == "Juniper."
    assert second.previous_response_id == first.id
    (sent,) = model_requests_with(live, "Another?")
    assert [m["content"] for m in sent["messages"] if m["role"] != "system"] == ["Name a cat.", "Miso.", "Another?"]
    session = Session.objects.get(runs__uuid=first.id.removeprefix("resp_"))
    assert session.runs.count() == 2
    items = client.responses.input_items.list(second.id)
    assert [item.content[0].text for item in items.data] == ["Another?"]


def test_an_approval_round_trip(live, client, receiver, warm):
    live.agent.tools = [{"name": "refund", "kind": "webhook", "url": receiver.url, "requires_approval": True}]
    live.agent.save()
    receiver.secret = live.agent.webhook_secret
    live.script(
        [("text", "Checking. "), ("tool_call", {"id": "a", "name": "refund", "arguments": '{"order": 7}'})],
        [("text", "Refunded.")],
    )

    paused = client.responses.create(model=live.agent.handle, input="Refund order 7")
    request = paused.output[-1]
    done = client.responses.create(
        model=live.agent.handle,
        previous_response_id=paused.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
    )

    assert request.type == "mcp_approval_request"
    assert (request.name, request.server_label, request.arguments) == ("refund", "refund", '{"order":7}')
    assert done.id == paused.id
    assert done.status == "completed"
    assert done.output_text == "Checking. Refunded."
    assert [call["input"] for call in receiver.calls] == [{"order": 7}]
    assert ToolCall.objects.get(call_id=request.id).status == ToolCall.Status.SUCCEEDED


def test_a_streamed_approval_round_trip_through_the_clients_stream_helper(live, client, receiver, warm):
    live.agent.tools = [{"name": "refund", "kind": "webhook", "url": receiver.url, "requires_approval": True}]
    live.agent.save()
    receiver.secret = live.agent.webhook_secret
    live.script(
        [("text", "Checking. "), ("tool_call", {"id": "a", "name": "refund", "arguments": '{"order": 7}'})],
        [("text", "Refunded.")],
    )

    with client.responses.stream(model=live.agent.handle, input="Refund order 7") as stream:
        paused = stream.get_final_response()
    request = paused.output[-1]
    with client.responses.stream(
        model=live.agent.handle,
        previous_response_id=paused.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}],
    ) as stream:
        events = list(stream)
        done = stream.get_final_response()

    assert request.type == "mcp_approval_request"
    assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[0].response.output[-1].id == request.id  # the response so far
    assert done.id == paused.id
    assert done.output_text == "Checking. Refunded."
    assert [item.type for item in done.output] == ["message", "mcp_approval_request", "message"]
    assert [call["input"] for call in receiver.calls] == [{"order": 7}]


WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_a_function_tool_round_trip(live, client, warm):
    live.script(
        [("text", "Let me look. "), ("tool_call", {"id": "a", "name": "weather", "arguments": '{"city": "Oslo"}'})],
        [("text", "Sunny in Oslo.")],
    )

    paused = client.responses.create(
        model=live.agent.handle, input="Weather in Oslo?", tools=[WEATHER], instructions="Be brief.", temperature=0.3
    )
    call = paused.output[-1]
    done = client.responses.create(
        model=live.agent.handle,
        previous_response_id=paused.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny"}'}],
    )

    assert paused.status == "completed"
    assert (call.type, call.name, call.arguments) == ("function_call", "weather", '{"city":"Oslo"}')
    assert done.id == paused.id
    assert done.output_text == "Let me look. Sunny in Oslo."
    first = model_requests_with(live, "Weather in Oslo?")[0]
    second = live.fake_llm.requests[live.agent.model][-1]
    assert first["tools"][-1]["function"]["name"] == "weather"
    assert first["temperature"] == 0.3
    assert "Be brief." in [m["content"] for m in first["messages"] if m["role"] == "system"]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "a", "content": '{"sky": "sunny"}'}


def test_cancel_stops_a_background_response(live, client):
    live.script([("text", "Once "), *[("delay", 0.5), ("text", "and ")] * 20, ("text", "the end.")])
    started = client.responses.create(model=live.agent.handle, input="A story", background=True)
    wait_status(client, started.id, {"in_progress"})

    cancelled = client.responses.cancel(started.id)

    assert cancelled.status == "cancelled"
    assert client.responses.retrieve(started.id).status == "cancelled"
    assert Run.objects.get(uuid=started.id.removeprefix("resp_")).status == Run.Status.STOPPED


def test_store_false_keeps_nothing_once_the_stream_is_done(live, client):
    live.script([("text", "Miso.")])

    with client.responses.stream(model=live.agent.handle, input="Name a cat.", store=False) as stream:
        final = stream.get_final_response()
    run_uuid = final.id.removeprefix("resp_")
    deadline = time.monotonic() + 10
    while Run.objects.filter(uuid=run_uuid).exists() and time.monotonic() < deadline:
        time.sleep(0.1)

    assert final.output_text == "Miso."
    assert final.store is False
    assert not Run.objects.filter(uuid=run_uuid).exists()
    assert not Session.objects.filter(agent=live.agent).exists()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final.id)


def test_errors_in_openais_shape(live, client):
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.responses.create(model="gpt-4o", input="Hi")
    with pytest.raises(openai.NotFoundError) as unknown_response:
        client.responses.retrieve("resp_" + "0" * 32)
    with pytest.raises(openai.BadRequestError) as bad_item:
        client.responses.create(model=live.agent.handle, input=[{"type": "image_generation_call", "id": "x"}])

    assert unknown_model.value.code == "model_not_found"
    assert unknown_response.value.code == "response_not_found"
    assert bad_item.value.param == "input[0].type"
    assert not Session.objects.filter(agent=live.agent).exists()


# --- the OpenAI Agents SDK, with its default model (the Responses API) -------------------


@pytest.fixture
def sdk(live):
    import agents  # openai-agents (requirements-dev.txt)

    agents.set_tracing_disabled(True)
    agents.set_default_openai_client(
        openai.AsyncOpenAI(base_url=f"{live.base_url}/v1", api_key=live.key, max_retries=0, timeout=30),
        use_for_tracing=False,
    )
    agents.set_default_openai_api("responses")
    return agents


def test_agents_sdk_runner_run(live, sdk, warm):
    live.script([("text", "Miso.")])
    agent = sdk.Agent(name="Cats", model=live.agent.handle)

    result = asyncio.run(sdk.Runner.run(agent, "Name a cat."))

    assert result.final_output == "Miso."
    assert result.last_response_id.startswith("resp_")


def test_agents_sdk_runner_run_streamed(live, sdk, warm):
    live.script([("text", "Miso, "), ("delay", 0.1), ("text", "Juniper.")])
    agent = sdk.Agent(name="Cats", model=live.agent.handle)

    async def run() -> tuple[str, list[str]]:
        result = sdk.Runner.run_streamed(agent, "Two cat names")
        deltas = [
            event.data.delta
            async for event in result.stream_events()
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
        ]
        return result.final_output, deltas

    final, deltas = asyncio.run(run())

    assert final == "Miso, Juniper."
    assert "".join(deltas) == "Miso, Juniper."


def test_agents_sdk_function_tool(live, sdk, warm):
    live.script(
        [("tool_call", {"id": "a", "name": "weather", "arguments": '{"city": "Oslo"}'})],
        [("text", "Sunny in Oslo.")],
    )
    asked: list[str] = []

    @sdk.function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"sunny in {city}"

    agent = sdk.Agent(name="Weather", model=live.agent.handle, tools=[weather], instructions="Use the tool.")

    result = asyncio.run(sdk.Runner.run(agent, "Weather in Oslo?"))

    assert result.final_output == "Sunny in Oslo."
    assert asked == ["Oslo"]
    sent = live.fake_llm.requests[live.agent.model][-1]
    assert sent["messages"][-1]["content"] == '"sunny in Oslo"'  # the output as the loop gives it (JSON)
    assert Session.objects.filter(agent=live.agent, runs__user_message__text="Weather in Oslo?").count() == 1


def test_agents_sdk_output_type(live, sdk, warm):
    live.script([("text", '{"name": "Miso", "age": 3}')])

    class Cat(pydantic.BaseModel):
        name: str
        age: int

    agent = sdk.Agent(name="Cats", model=live.agent.handle, output_type=Cat)

    result = asyncio.run(sdk.Runner.run(agent, "A cat, as JSON."))

    assert result.final_output == Cat(name="Miso", age=3)
    sent = model_requests_with(live, "A cat, as JSON.")[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["name", "age"]


def test_agents_sdk_run_streamed_with_a_function_tool(live, sdk, warm):
    live.script(
        [("tool_call", {"id": "a", "name": "weather", "arguments": '{"city": "Oslo"}'})],
        [("text", "Sunny "), ("text", "in Oslo.")],
    )

    @sdk.function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    agent = sdk.Agent(name="Weather", model=live.agent.handle, tools=[weather])

    async def run() -> tuple[str, list[str]]:
        result = sdk.Runner.run_streamed(agent, "Weather in Oslo?")
        kinds = [event.item.type async for event in result.stream_events() if event.type == "run_item_stream_event"]
        return result.final_output, kinds

    final, kinds = asyncio.run(run())

    assert final == "Sunny in Oslo."
    assert kinds == ["tool_call_item", "tool_call_output_item", "message_output_item"]
    run_record = Run.objects.get(session__agent=live.agent, user_message__text="Weather in Oslo?")
    assert run_record.status == Run.Status.SUCCEEDED
    assert run_record.tool_calls.get().output == "sunny in Oslo"
