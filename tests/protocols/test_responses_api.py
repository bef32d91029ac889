"""OpenAI's Responses API in process: the response object and its events as the real turn
loop writes them (a scripted model), the stream resumed by sequence number with nothing lost
or repeated, approvals answered the OpenAI way, and every bad input answered in OpenAI's
error shape with nothing stored."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from chat.models import Message, Session
from genie.models import AccessToken
from genie.services import create_access_token
from protocols.responses.views import response_stream_app
from runs import loop
from runs.events import read_run_log
from runs.formats.responses import ResponsesFormat
from runs.handoff import HANDOFF_HEADER, take_handoff
from runs.models import Run, ToolCall
from tests.conftest import bearer_client, run_in_process
from tests.factories import AgentFactory
from tests.runs.conftest import text, tool_call

pytestmark = pytest.mark.django_db

URL = "/v1/responses"


@pytest.fixture
def model(replies_in_process):
    """The model's replies; a waiting request's run is executed in-process by the loop
    where the view waits for it (no worker here), a cancel's wait too (``stop_and_wait``)."""
    with mock.patch("runs.waiting.wait_for_finish", side_effect=run_in_process):
        yield replies_in_process


def create(client, **body):
    return client.post(URL, body, format="json")


def frames(raw: str) -> list[dict]:
    """The data of each SSE event, checked against its ``event:`` line."""
    events = []
    for block in raw.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        name = block.split("\n")[0].removeprefix("event: ")
        data = json.loads(block.split("\ndata: ", 1)[1])
        assert data["type"] == name
        events.append(data)
    return events


def relay(plan, wire) -> list[dict]:
    """What the relay sends of ``plan``'s backlog in ``wire``'s format (its rules: every
    event read, frames sent only for events after ``delivered_seq``, the end after the
    format says so)."""
    out = []
    sent = plan.after_seq
    for event in plan.backlog:
        if event.seq <= sent:
            continue
        sent = event.seq
        frame = wire.frame(event)
        if frame and event.seq > plan.delivered_seq:
            out += frames(frame)
        if wire.ends_after(event):
            break
    return out


def test_a_plain_response_in_openais_shape_stored_as_a_session(api, agent, model):
    model.scripts.append(text("Miso, ", "Juniper."))

    response = create(api, model=agent.handle, input="Two cat names", metadata={"ticket": "42"})

    assert response.status_code == 200
    body = response.json()
    run = Run.objects.get()
    assert body["id"] == f"resp_{run.uuid.hex}"
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["model"] == agent.handle
    assert body["metadata"] == {"ticket": "42"}
    assert body["error"] is None
    assert body["incomplete_details"] is None
    (message,) = body["output"]
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "text": "Miso, Juniper.", "annotations": [], "logprobs": []}]
    assert set(body["usage"]) == {
        "input_tokens",
        "input_tokens_details",
        "output_tokens",
        "output_tokens_details",
        "total_tokens",
    }
    assert response["Genie-Session"] == str(run.session.uuid)
    assert list(run.session.messages.order_by("created_at").values_list("sender_role", "text")) == [
        ("user", "Two cat names"),
        ("agent", "Miso, Juniper."),
    ]
    retrieved = api.get(f"{URL}/{body['id']}").json()
    assert {k: v for k, v in retrieved.items() if k not in {"background", "store"}} == {
        k: v for k, v in body.items() if k not in {"background", "store"}
    }


def test_the_stream_is_openais_events_with_increasing_sequence_numbers(api, agent, model):
    model.scripts.append(text("Miso, ", "Juniper."))

    response = create(api, model=agent.handle, input="Two cat names", stream=True)
    run = Run.objects.get()
    loop.execute_run(run.pk)
    _plan, wire = take_handoff(response[HANDOFF_HEADER.decode()])
    events = [e for entry in read_run_log(run) for e in frames(wire.frame(_event(run, entry)))]

    assert response.status_code == 200
    assert isinstance(wire, ResponsesFormat)
    types = [e["type"] for e in events]
    assert [t for i, t in enumerate(types) if t != types[i - 1]] == [  # the stored deltas may be merged
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    numbers = [e["sequence_number"] for e in events]
    assert numbers == sorted(set(numbers))
    assert {e["response"]["id"] for e in events if "response" in e} == {f"resp_{run.uuid.hex}"}
    assert events[0]["response"]["status"] == "in_progress"
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Miso, Juniper."
    completed = events[-1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "Miso, Juniper."
    assert completed == {**api.get(f"{URL}/{completed['id']}").json(), "background": False, "store": True}


def _event(run, entry):
    from runs.events import StreamEvent

    return StreamEvent(entry.seq, str(run.uuid), entry.type, json.dumps(entry.data))


def stream_scope(key: str, response_id: str, query: str) -> dict:
    return {
        "type": "http",
        "headers": [(b"authorization", f"Bearer {key}".encode())],
        "query_string": query.encode(),
        "url_route": {"kwargs": {"response_id": response_id}},
        "client": ("127.0.0.1", 1),
    }


def test_a_resumed_stream_gives_every_event_after_starting_after_once(personal_key, agent, model):
    model.scripts.append(text("one ", "two ", "three ", "four"))
    api = bearer_client(personal_key)
    body = create(api, model=agent.handle, input="Count", background=True).json()
    run = Run.objects.get()
    loop.execute_run(run.pk)

    plan, wire = response_stream_app.prepare(stream_scope(personal_key, body["id"], "stream=true"))
    whole = relay(plan, wire)
    for cut in range(1, len(whole)):
        starting_after = whole[cut - 1]["sequence_number"]
        plan, wire = response_stream_app.prepare(
            stream_scope(personal_key, body["id"], f"stream=true&starting_after={starting_after}")
        )
        resumed = relay(plan, wire)
        assert whole[:cut] + resumed == whole, f"resumed after {starting_after}"

    assert body["status"] == "queued"
    assert whole[-1]["type"] == "response.completed"


def test_previous_response_id_continues_the_session(api, agent, model):
    model.scripts += [text("Miso."), text("Juniper.")]
    first = create(api, model=agent.handle, input="Name a cat.").json()

    second = create(api, model=agent.handle, input="Another?", previous_response_id=first["id"]).json()

    session = Session.objects.get()
    assert second["previous_response_id"] == first["id"]
    assert second["output"][0]["content"][0]["text"] == "Juniper."
    assert list(session.messages.order_by("created_at").values_list("text", flat=True)) == [
        "Name a cat.",
        "Miso.",
        "Another?",
        "Juniper.",
    ]
    sent = [m["content"] for m in model.requests[-1].messages if m["role"] != "system"]
    assert sent == ["Name a cat.", "Miso.", "Another?"]
    items = api.get(f"{URL}/{second['id']}/input_items").json()
    assert items["object"] == "list"
    assert [(i["role"], i["content"][0]["text"]) for i in items["data"]] == [("user", "Another?")]
    assert items["has_more"] is False


def test_a_conversation_sent_as_input_becomes_the_sessions_earlier_turns(api, agent, model):
    model.scripts.append(text("Juniper."))
    conversation = [
        {"role": "user", "content": "Name a cat."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Miso."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Another?"}]},
    ]

    body = create(api, model=agent.handle, input=conversation).json()

    items = api.get(f"{URL}/{body['id']}/input_items", {"order": "asc"}).json()["data"]
    assert [(i["role"], i["content"][0]["text"]) for i in items] == [
        ("user", "Name a cat."),
        ("assistant", "Miso."),
        ("user", "Another?"),
    ]


def test_an_approval_is_an_mcp_approval_request_and_its_answer_lets_the_run_go_on(api, agent, model, receiver):
    agent.tools = [{"name": "refund", "kind": "webhook", "url": receiver.url, "requires_approval": True}]
    agent.save()
    receiver.secret = agent.webhook_secret
    model.scripts += [
        [*text("Checking. "), *tool_call("refund", '{"order": 7}')],
        text("Refunded."),
    ]

    paused = create(api, model=agent.handle, input="Refund order 7").json()
    request = paused["output"][-1]
    call = ToolCall.objects.get()
    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    done = create(api, model=agent.handle, previous_response_id=paused["id"], input=[approval]).json()
    again = create(api, model=agent.handle, previous_response_id=paused["id"], input=[approval])

    assert paused["status"] == "completed"
    assert request == {
        "id": call.call_id,
        "type": "mcp_approval_request",
        "name": "refund",
        "arguments": '{"order":7}',
        "server_label": "refund",
    }
    assert Run.objects.get().status == Run.Status.SUCCEEDED
    assert done["id"] == paused["id"]  # a response is one run: the same run went on
    assert done["status"] == "completed"
    assert [item["type"] for item in done["output"]] == ["message", "mcp_approval_request", "message"]
    assert done["output"][-1]["content"][0]["text"] == "Refunded."
    assert [c["input"] for c in receiver.calls] == [{"order": 7}]
    call.refresh_from_db()
    assert call.status == ToolCall.Status.SUCCEEDED
    assert call.decided_by
    assert again.status_code == 400
    assert again.json()["error"]["param"] == "input[0].approval_request_id"


def test_a_denied_approval_tells_the_model(api, agent, model, receiver):
    agent.tools = [{"name": "refund", "kind": "webhook", "url": receiver.url, "requires_approval": True}]
    agent.save()
    model.scripts += [tool_call("refund", "{}"), text("Not refunded.")]
    paused = create(api, model=agent.handle, input="Refund").json()
    denial = {
        "type": "mcp_approval_response",
        "approval_request_id": paused["output"][-1]["id"],
        "approve": False,
        "reason": "no",
    }

    done = create(api, model=agent.handle, previous_response_id=paused["id"], input=[denial]).json()

    assert done["output"][-1]["content"][0]["text"] == "Not refunded."
    assert ToolCall.objects.get().status == ToolCall.Status.DENIED
    assert receiver.calls == []


def test_cancel_stops_the_run(api, agent):
    body = create(api, model=agent.handle, input="Hi", background=True).json()

    cancelled = api.post(f"{URL}/{body['id']}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert Run.objects.get().status == Run.Status.STOPPED
    assert api.get(f"{URL}/{body['id']}").json()["status"] == "cancelled"


def test_an_unknown_model_is_model_not_found_and_nothing_is_stored(api):
    response = create(api, model="gpt-4o", input="Hi")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `gpt-4o` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert not Session.objects.exists()


@pytest.mark.parametrize("value", ["resp_" + "0" * 32, "resp_nothex", "chatcmpl-1", "x"])
def test_an_unknown_response_id_is_404_everywhere(api, agent, value):
    for response in (
        api.get(f"{URL}/{value}"),
        api.post(f"{URL}/{value}/cancel"),
        api.get(f"{URL}/{value}/input_items"),
        create(api, model=agent.handle, input="Hi", previous_response_id=value),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert response.json()["error"]["code"] == "response_not_found"
    assert not Session.objects.exists()


def test_another_callers_response_is_not_found(api, agent, team, model):
    model.scripts.append(text("Mine."))
    body = create(api, model=agent.handle, input="Hi").json()
    other_team = AgentFactory().team
    _, elsewhere = create_access_token(team=other_team, kind=AccessToken.Kind.SECRET)
    _, publishable = create_access_token(team=team, kind=AccessToken.Kind.PUBLISHABLE)

    for client in (bearer_client(elsewhere), bearer_client(publishable)):
        assert client.get(f"{URL}/{body['id']}").status_code == 404
        assert client.get(f"{URL}/{body['id']}/input_items").status_code == 404
        assert client.post(f"{URL}/{body['id']}/cancel").status_code == 404
    previous = create(bearer_client(publishable), model=agent.handle, input="Hi", previous_response_id=body["id"])
    assert previous.status_code == 404
    assert previous.json()["error"]["param"] == "previous_response_id"
    assert Session.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "image_generation_call"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "robot", "content": "Hi"}]}, "input[0].role"),
        ({"input": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}, "input[1]"),
        ({"input": []}, "input"),
        ({"input": "Hi", "frequency": 1}, "frequency"),
        ({"input": "Hi", "metadata": {"k": 1}}, "metadata"),
        ({"input": "Hi", "background": True, "store": False}, "background"),
        ({"input": [{"type": "function_call_output", "call_id": "call_1", "output": "{}"}]}, "input"),
        (
            {"input": [{"type": "mcp_approval_response", "approval_request_id": "x", "approve": True}]},
            "previous_response_id",
        ),
        ({"input": "   "}, "input[0].content"),
    ],
)
def test_bad_input_is_400_naming_the_param_and_nothing_is_stored(api, agent, body, param):
    response = create(api, model=agent.handle, **body)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert not Session.objects.exists()
    assert not Message.objects.exists()


WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_the_clients_settings_are_stored_on_the_run_and_sent_to_the_model(api, agent, model):
    model.scripts.append(text('{"name": "Miso"}'))
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

    body = create(
        api,
        model=agent.handle,
        instructions="Answer in JSON.",
        input=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "A cat?"}],
        temperature=0.2,
        top_p=0.9,
        max_output_tokens=50,
        text={"format": {"type": "json_schema", "name": "cat", "schema": schema, "strict": True}},
    ).json()

    (sent,) = model.requests
    assert (sent.temperature, sent.top_p, sent.max_tokens) == (0.2, 0.9, 50)
    assert sent.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "cat", "schema": schema, "strict": True},
    }
    system = [m["content"] for m in sent.messages if m["role"] == "system"]
    assert system[-2:] == ["Answer in JSON.", "Be brief."]  # after the agent's own instructions
    assert body["instructions"] == "Answer in JSON.\n\nBe brief."
    assert (body["temperature"], body["top_p"], body["max_output_tokens"]) == (0.2, 0.9, 50)
    assert body["text"] == {"format": {"type": "json_schema", "name": "cat", "schema": schema, "strict": True}}
    assert body["output"][0]["content"][0]["text"] == '{"name": "Miso"}'


def test_an_agent_that_takes_no_client_settings_refuses_them_by_name(api, agent):
    agent.allow_client_settings = False
    agent.save()

    refused = create(api, model=agent.handle, input="Hi", temperature=0.5)
    instructed = create(
        api, model=agent.handle, input=[{"role": "system", "content": "Rhyme."}, {"role": "user", "content": "Hi"}]
    )

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unsupported_parameter"
    assert refused.json()["error"]["param"] == "temperature"
    assert instructed.json()["error"]["param"] == "input[0].role"
    assert not Session.objects.exists()


def test_a_function_tool_round_trip_with_previous_response_id(api, agent, model):
    model.scripts += [tool_call("weather", '{"city": "Oslo"}'), text("Sunny in Oslo.")]

    paused = create(api, model=agent.handle, input="Weather in Oslo?", tools=[WEATHER], tool_choice="auto").json()
    (call,) = paused["output"]
    answered = create(
        api,
        model=agent.handle,
        previous_response_id=paused["id"],
        input=[{"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky": "sunny"}'}],
    ).json()

    assert paused["status"] == "completed"
    assert call == {
        "id": f"fc_{call['call_id']}",
        "type": "function_call",
        "status": "completed",
        "call_id": ToolCall.objects.get().call_id,
        "name": "weather",
        "arguments": '{"city":"Oslo"}',
    }
    assert paused["tools"] == [{**WEATHER, "strict": False}]
    assert model.requests[0].tools[0].name == "weather"
    assert answered["id"] == paused["id"]
    assert [item["type"] for item in answered["output"]] == ["function_call", "message"]
    assert answered["output"][-1]["content"][0]["text"] == "Sunny in Oslo."
    assert ToolCall.objects.get().output == {"sky": "sunny"}
    tool_message = model.requests[1].messages[-1]
    assert (tool_message["role"], tool_message["content"]) == ("tool", '{"sky": "sunny"}')


def test_a_stateless_client_resending_the_conversation_answers_the_paused_response(api, agent, model):
    model.scripts += [tool_call("weather", '{"city": "Oslo"}'), text("Sunny.")]
    question = {"role": "user", "content": "Weather in Oslo?"}
    paused = create(api, model=agent.handle, input=[question], tools=[WEATHER]).json()
    call = paused["output"][0]

    answered = create(
        api,
        model=agent.handle,
        tools=[WEATHER],
        input=[
            question,
            {k: call[k] for k in ("type", "id", "call_id", "name", "arguments")},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
        ],
    ).json()

    assert answered["id"] == paused["id"]
    assert answered["output"][-1]["content"][0]["text"] == "Sunny."
    assert Session.objects.count() == 1
    assert ToolCall.objects.get().output == "sunny"


def test_the_clients_own_tool_loop_is_read_by_the_first_model_call(api, agent, model):
    model.scripts.append(text("It is sunny."))

    body = create(
        api,
        model=agent.handle,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "mine_1", "name": "weather", "arguments": '{"city": "Oslo"}'},
            {"type": "function_call_output", "call_id": "mine_1", "output": "sunny"},
        ],
    ).json()

    assert body["output"][-1]["content"][0]["text"] == "It is sunny."
    steps = model.requests[0].messages[-2:]
    assert steps[0]["tool_calls"][0]["id"] == "mine_1"
    assert steps[1] == {"role": "tool", "tool_call_id": "mine_1", "content": "sunny"}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
        ({"tool_choice": {"type": "mcp"}}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"temperature": 3}, "temperature"),
    ],
)
def test_bad_settings_are_400_naming_the_param(api, agent, extra, param):
    response = create(api, model=agent.handle, input="Hi", **extra)

    assert response.status_code == 400, response.json()
    assert response.json()["error"]["param"] == param
    assert not Session.objects.exists()


def test_store_false_keeps_nothing_once_answered(api, agent, model):
    model.scripts.append(text("Miso."))

    body = create(api, model=agent.handle, input="Name a cat.", store=False).json()

    assert body["output"][0]["content"][0]["text"] == "Miso."
    assert body["store"] is False
    assert not Session.objects.exists()
    assert not Message.objects.exists()
    assert api.get(f"{URL}/{body['id']}").status_code == 404
    refused = create(api, model=agent.handle, input="Another?", store=False, previous_response_id=body["id"])
    assert refused.json()["error"]["param"] == "store"


def test_forget_session_waits_for_a_working_run_and_stops_a_paused_one(api, agent, model):
    from runs import services as run_services

    model.scripts.append(tool_call("weather", '{"city": "Oslo"}'))
    create(api, model=agent.handle, input="Weather?", tools=[WEATHER], background=True)
    run = Run.objects.get()

    working = run_services.forget_session(session_id=run.session_id)
    loop.execute_run(run.pk)  # pauses for the client's function call
    paused_then_gone = run_services.forget_session(session_id=run.session_id)

    assert working is False
    assert paused_then_gone is True
    assert not Session.objects.exists()
    assert not ToolCall.objects.exists()


def test_a_streamed_store_false_response_is_forgotten_after_commit(api, agent, django_capture_on_commit_callbacks):
    from runs import tasks

    with (
        mock.patch.object(tasks.forget_session, "delay") as forget,
        mock.patch.object(tasks.execute_run, "delay"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        create(api, model=agent.handle, input="Hi", stream=True, store=False)

    forget.assert_called_once_with(Session.objects.get().pk)


def test_a_reply_cut_by_the_token_cap_is_incomplete(api, agent, model):
    from runs.providers import Chunk

    model.scripts.append([Chunk(text="Once upon"), Chunk(finish_reason="length", prompt_tokens=5, completion_tokens=2)])

    body = create(api, model=agent.handle, input="A story", max_output_tokens=2).json()

    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["content"][0]["text"] == "Once upon"
    assert body["output"][0]["status"] == "incomplete"
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (5, 2)
    assert model.requests[0].max_tokens == 2


def test_a_failed_run_is_turn_failed_and_the_response_says_failed(api, agent, model):
    from runs.providers import ProviderError

    model.scripts.append([ProviderError(code="provider_error", message="The model is down.")])

    response = create(api, model=agent.handle, input="Hi")
    retrieved = api.get(f"{URL}/resp_{Run.objects.get().uuid.hex}").json()

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "turn_failed"
    assert response.json()["error"]["type"] == "server_error"
    assert retrieved["status"] == "failed"
    assert retrieved["error"] == {"code": "server_error", "message": "The model is down."}


def test_with_previous_response_id_the_conversation_is_not_sent_again(api, agent, model):
    model.scripts.append(text("Miso."))
    first = create(api, model=agent.handle, input="Name a cat.").json()

    resent = create(
        api,
        model=agent.handle,
        previous_response_id=first["id"],
        input=[{"role": "user", "content": "Name a cat."}, {"role": "user", "content": "Another?"}],
    )

    assert resent.status_code == 400
    assert resent.json()["error"]["param"] == "input[0]"
    assert Message.objects.count() == 2
