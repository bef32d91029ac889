"""What an OpenAI client asks of a turn, honoured: its instructions and sampling settings,
its tools, its response format, its stateless history. In process: the request goes
through ``/v1/chat/completions``, the turn runs inline (the worker's own loop) against the
scripted model (``tests/fakellm.py``), which records what it was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from chat.models import Message, Session
from genie.links import absolute_url
from genie.models import AccessToken
from genie.services import create_access_token
from runs import loop
from runs.models import Run
from tests.conftest import bearer_client
from tests.factories import MemberFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

URL = "/v1/chat/completions"


@pytest.fixture
def model(agent, fake_llm, settings):
    """The agent's model is the scripted fake; the turn's events are flushed at once."""
    settings.GENIE_EVENT_FLUSH_INTERVAL = 0
    settings.GENIE_STOP_POLL_INTERVAL = 0
    agent.base_url = fake_llm.base_url
    agent.save()
    return fake_llm


@pytest.fixture
def worker(enqueued) -> Iterator[dict[str, list[Any]]]:
    """Each turn runs inline when the view waits for it (a paused run's continuation
    too); the tasks enqueued are recorded instead of sent."""

    def wait(*, run: Run, timeout: float, or_pause: bool = False) -> bool:
        for pk in [*enqueued.pop("execute_run", []), *enqueued.pop("continue_run", [])]:
            loop.execute_run(pk)
        return True

    with (
        mock.patch("runs.handoff.wait_for_finish", side_effect=wait),
        mock.patch("runs.handoff.wait_for_continuation"),
    ):
        yield enqueued


def ask(api, body: dict, **headers: str):
    return api.post(URL, body, format="json", **headers)


def sent_to_model(model, agent) -> dict:
    return model.requests[agent.model][-1]


def test_the_clients_instructions_and_settings_reach_the_model_and_are_stored(api, agent, model, worker):
    agent.max_tokens = 100
    agent.save()
    model.script(agent.model, [("text", "Arr, Miso.")])
    body = {
        "model": agent.handle,
        "messages": [
            {"role": "system", "content": "Talk like a pirate."},
            {"role": "developer", "content": "Answer in two words."},
            {"role": "user", "content": "Name a cat."},
        ],
        "temperature": 1.3,
        "top_p": 0.9,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 42,
        "stop": "END",
        "max_tokens": 5000,
    }

    response = ask(api, body)

    assert response.status_code == 200, response.json()
    assert response.json()["choices"][0]["message"]["content"] == "Arr, Miso."
    sent = sent_to_model(model, agent)
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("system", agent.instructions),
        ("system", "Talk like a pirate."),
        ("system", "Answer in two words."),
        ("user", "Name a cat."),
    ]
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["stop"]) == (1.3, 0.9, 42, ["END"])
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.5, -0.5)
    assert sent["max_tokens"] == 100  # never above the agent's own limit
    run = Run.objects.get()
    assert run.client_settings == {
        "instructions": ["Talk like a pirate.", "Answer in two words."],
        "temperature": 1.3,
        "top_p": 0.9,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 42,
        "stop": ["END"],
        "max_tokens": 5000,
    }


def test_max_completion_tokens_under_the_agents_limit_is_the_cap(api, agent, model, worker):
    model.script(agent.model, [("text", "Hi.")])

    response = ask(
        api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 12}
    )

    assert response.status_code == 200
    assert sent_to_model(model, agent)["max_tokens"] == 12


def test_without_settings_the_agents_own_apply(api, agent, model, worker):
    model.script(agent.model, [("text", "Hi.")])

    ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}]})

    sent = sent_to_model(model, agent)
    assert sent["temperature"] == agent.temperature
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert not {"top_p", "seed", "stop"} & set(sent)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 0.1}, "temperature"),
        ({"top_p": 0.5}, "top_p"),
        ({"presence_penalty": 1}, "presence_penalty"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"seed": 3}, "seed"),
        ({"stop": ["x"]}, "stop"),
        ({"max_tokens": 10}, "max_tokens"),
        ({"max_completion_tokens": 10}, "max_completion_tokens"),
        ({"messages": [{"role": "system", "content": "Be rude."}, {"role": "user", "content": "Hi"}]}, "messages[0]"),
        (
            {"messages": [{"role": "developer", "content": "Be rude."}, {"role": "user", "content": "Hi"}]},
            "messages[0]",
        ),
    ],
)
def test_an_agent_that_forbids_client_settings_refuses_each_naming_it(api, agent, worker, extra, param):
    agent.allow_client_settings = False
    agent.save()
    body = {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], **extra}

    response = ask(api, body)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "unsupported_parameter", param)
    assert agent.handle in error["message"]
    assert Session.objects.count() == Message.objects.count() == 0


def test_an_agent_that_forbids_client_settings_still_takes_plain_requests(api, agent, model, worker):
    agent.allow_client_settings = False
    agent.save()
    model.script(agent.model, [("text", "Hi.")])

    response = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], "temperature": None})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_settings_out_of_range_are_400_naming_them(api, agent, worker, extra, param):
    response = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], **extra})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert Session.objects.count() == 0


def test_a_session_started_through_v1_is_titled_from_its_first_user_message_without_a_model_call(
    api, agent, model, worker
):
    model.script(agent.model, [("text", "Juniper.")])
    body = {
        "model": agent.handle,
        "messages": [
            {"role": "user", "content": "Name a cat for my grandmother please, a calm one"},
            {"role": "assistant", "content": "Miso."},
            {"role": "user", "content": "Another?"},
        ],
    }

    response = ask(api, body)

    session = Session.objects.get(uuid=response["Genie-Session"])
    assert session.title == "Name a cat for my grandmother"
    assert worker["generate_title"] == []
    assert len(model.requests[agent.model]) == 1  # the turn's call only


def test_parameters_accepted_but_not_applied_are_named_in_the_reply(api, agent, model, worker):
    model.script(agent.model, [("text", "Miso.")], [("text", "Tom.")])
    body = {"model": agent.handle, "messages": [{"role": "user", "content": "A cat name?"}]}

    ignored = ask(api, {**body, "logit_bias": {"50256": -100}, "store": True, "parallel_tool_calls": None})
    plain = ask(api, {**body, "temperature": 0.2})

    assert ignored.status_code == plain.status_code == 200
    assert ignored["Genie-Ignored-Parameters"] == "store, logit_bias"  # null is not a value sent
    assert "Genie-Ignored-Parameters" not in plain


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_any_unknown_v1_path_is_an_openai_404_for_every_method_even_with_csrf_checks(method, personal_key):
    client = Client(enforce_csrf_checks=True)

    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}

    response = getattr(client, method)("/v1/embeddings", **body, HTTP_AUTHORIZATION=f"Bearer {personal_key}")

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("unknown_url", "invalid_request_error")
    assert error["message"] == f"Invalid URL ({method.upper()} /v1/embeddings)"


# --- client tools -----------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_client_tool_call_ends_the_reply_with_tool_calls_and_the_tool_result_continues_the_same_run(
    api, agent, model, worker
):
    model.script(
        agent.model,
        [("text", "Checking. "), ("tool_call", {"id": "m1", "name": "get_weather", "arguments": '{"city": "Oslo"}'})],
        [("text", "Sunny in Oslo.")],
    )
    question = {"role": "user", "content": "Weather in Oslo?"}

    first = ask(api, {"model": agent.handle, "messages": [question], "tools": [WEATHER]})

    assert first.status_code == 200, first.json()
    choice = first.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking. "
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    run = Run.objects.get()
    assert run.status == Run.Status.REQUIRES_ACTION
    assert first["Genie-Run-Uuid"] == str(run.uuid)
    assert first["Genie-Run-Status"] == "requires_action"
    offered = sent_to_model(model, agent)["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["get_weather"]

    second = ask(
        api,
        {
            "model": agent.handle,
            "tools": [WEATHER],
            "messages": [
                question,
                choice["message"],
                {"role": "tool", "tool_call_id": call["id"], "content": '{"sky": "clear"}'},
            ],
        },
    )

    assert second.status_code == 200, second.json()
    assert second.json()["id"] == first.json()["id"]  # the same run goes on
    assert second.json()["choices"][0]["message"] == {"role": "assistant", "content": "Sunny in Oslo.", "refusal": None}
    assert second.json()["choices"][0]["finish_reason"] == "stop"
    assert second["Genie-Session"] == first["Genie-Session"]
    assert "Genie-Run-Status" not in second
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED
    assert run.tool_calls.get().output == {"sky": "clear"}
    assert Session.objects.count() == Run.objects.count() == 1
    followed = sent_to_model(model, agent)["messages"][-2:]
    assert followed[0]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert followed[1] == {"role": "tool", "tool_call_id": "m1", "content": '{"sky": "clear"}'}
    assert list(Session.objects.get().messages.order_by("created_at", "id").values_list("text", flat=True)) == [
        "Weather in Oslo?",
        "Checking. Sunny in Oslo.",
    ]


def test_the_agents_own_tools_are_offered_first_and_still_run_on_the_server(api, agent, model, worker, receiver):
    agent.tools = [{"name": "lookup", "kind": "webhook", "url": receiver.url}]
    agent.save()
    receiver.secret = agent.webhook_secret
    model.script(
        agent.model, [("tool_call", {"id": "m1", "name": "lookup", "arguments": "{}"})], [("text", "Found it.")]
    )

    response = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Look"}], "tools": [WEATHER]})

    assert response.json()["choices"][0]["message"]["content"] == "Found it."
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    offered = model.requests[agent.model][0]["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["lookup", "get_weather"]
    assert len(receiver.calls) == 1


def test_tool_choice_goes_to_the_model(api, agent, model, worker):
    model.script(agent.model, [("text", "ok")])
    choice = {"type": "function", "function": {"name": "get_weather"}}

    ask(
        api,
        {
            "model": agent.handle,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER],
            "tool_choice": choice,
        },
    )

    assert sent_to_model(model, agent)["tool_choice"] == choice


def test_a_tool_loop_the_client_ran_elsewhere_is_read_by_the_model_after_the_user_message(api, agent, model, worker):
    model.script(agent.model, [("text", "1 + 2 = 3.")])
    body = {
        "model": agent.handle,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "What is 1 + 2?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "abc", "type": "function", "function": {"name": "add", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "abc", "content": '{"result": 3}'},
        ],
    }

    response = ask(api, body)

    assert response.status_code == 200, response.json()
    assert response.json()["choices"][0]["message"]["content"] == "1 + 2 = 3."
    sent = sent_to_model(model, agent)["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[3] == {"role": "tool", "tool_call_id": "abc", "content": '{"result": 3}'}


def test_a_server_tool_waiting_for_approval_says_what_it_awaits_and_stops(api, agent, model, worker, receiver):
    agent.tools = [{"name": "refund", "kind": "webhook", "url": receiver.url, "requires_approval": True}]
    agent.save()
    model.script(agent.model, [("text", "Checking."), ("tool_call", {"id": "m1", "name": "refund", "arguments": "{}"})])

    response = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Refund order 7"}]})

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    call = Run.objects.get().tool_calls.get()
    url = absolute_url(None, "runs:tool-call-approval", session_uuid=response["Genie-Session"], call_id=call.call_id)
    assert choice["message"]["content"] == f"Checking.\n\n[Waiting for approval of the tool call `refund`: POST {url}]"
    assert response["Genie-Run-Status"] == "requires_action"
    assert response["Genie-Run-Uuid"] == str(call.run.uuid)
    detail = api.get(f"/api/v1/sessions/{response['Genie-Session']}").json()
    assert [action["type"] for action in detail["pending_actions"]] == ["approval"]
    assert receiver.calls == []


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name", "invalid"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools[0].function.parameters",
            "invalid_schema",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice",
            "invalid_value",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools", "invalid_value"),
        ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "tool", "tool_call_id": "nobody-made-it", "content": "42"},
                ]
            },
            "messages[1].tool_call_id",
            "invalid_value",
        ),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
            "messages",
            "invalid_value",
        ),
    ],
)
def test_bad_tool_input_is_400_naming_the_param_and_stores_nothing(api, agent, worker, extra, param, code):
    response = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], **extra})

    assert response.status_code == 400, response.json()
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)
    assert Session.objects.count() == 0


def test_a_client_tool_named_like_one_of_the_agents_is_400(api, agent, worker):
    agent.tools = [{"name": "get_weather", "kind": "client"}]
    agent.save()

    response = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER]})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools[0].function.name"


def test_a_local_agent_refuses_client_tools(api, agent, worker):
    agent.provider = "local"
    agent.save()

    response = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER]})

    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == ("tools", "unsupported_parameter")


# --- structured output ------------------------------------------------------------------

JOKE = {
    "type": "json_schema",
    "json_schema": {
        "name": "joke",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"setup": {"type": "string"}, "punchline": {"type": "string"}},
            "required": ["setup", "punchline"],
            "additionalProperties": False,
        },
    },
}


def test_a_json_schema_goes_to_the_model_and_a_valid_reply_passes(api, agent, model, worker):
    model.script(agent.model, [("text", '{"setup": "Why?", '), ("text", '"punchline": "Because."}')])

    response = ask(
        api, {"model": agent.handle, "messages": [{"role": "user", "content": "A joke"}], "response_format": JOKE}
    )

    assert response.status_code == 200, response.json()
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"setup": "Why?", "punchline": "Because."}
    assert sent_to_model(model, agent)["response_format"] == JOKE
    assert Run.objects.get().client_settings["response_format"] == JOKE


@pytest.mark.parametrize("reply", ['{"setup": "Why?"}', "Why? Because."])
def test_a_strict_reply_that_does_not_validate_fails_the_run_with_invalid_output(api, agent, model, worker, reply):
    model.script(agent.model, [("text", reply)])

    response = ask(
        api, {"model": agent.handle, "messages": [{"role": "user", "content": "A joke"}], "response_format": JOKE}
    )

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "turn_failed"
    run = Run.objects.get()
    assert (run.status, run.error_code) == (Run.Status.FAILED, "invalid_output")
    assert run.agent_message.text == reply  # kept, as any failed reply's text


def test_json_object_goes_to_the_model(api, agent, model, worker):
    model.script(agent.model, [("text", "{}")])

    ask(
        api,
        {
            "model": agent.handle,
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        },
    )

    assert sent_to_model(model, agent)["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_a_bad_response_format_is_400(api, agent, worker, response_format, param):
    body = {"model": agent.handle, "messages": [{"role": "user", "content": "x"}], "response_format": response_format}

    response = ask(api, body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert Session.objects.count() == 0


# --- stateless conversations ------------------------------------------------------------


def test_five_turns_sent_the_openai_way_are_one_session_with_one_model_call_each(api, agent, model, worker):
    messages: list[dict] = []
    for turn in range(5):
        model.script(agent.model, [("text", f"Answer {turn}.")])
        messages.append({"role": "user", "content": f"Question {turn}?"})

        response = ask(
            api, {"model": agent.handle, "messages": [{"role": "system", "content": "Be brief."}, *messages]}
        )

        assert response.status_code == 200, response.json()
        messages.append(response.json()["choices"][0]["message"])

    assert Session.objects.count() == 1
    assert Message.objects.count() == 10
    assert len(model.requests[agent.model]) == 5  # no title call
    assert worker["generate_title"] == []
    assert Session.objects.get().title == "Question 0?"


def test_a_history_that_differs_from_every_stored_one_starts_a_new_session(api, agent, model, worker):
    model.script(agent.model, [("text", "Miso.")])
    first = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Name a cat."}]})
    edited = [
        {"role": "user", "content": "Name a cat."},
        {"role": "assistant", "content": "Tom."},  # not what was answered
        {"role": "user", "content": "Another?"},
    ]

    second = ask(api, {"model": agent.handle, "messages": edited})

    assert second["Genie-Session"] != first["Genie-Session"]
    assert list(Session.objects.get(uuid=first["Genie-Session"]).messages.values_list("text", flat=True)) == [
        "Name a cat.",
        "Miso.",
    ]


def test_another_callers_session_is_never_continued(api, agent, model, worker, team):
    model.script(agent.model, [("text", "Miso.")])
    first = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Name a cat."}]})
    other = MemberFactory(team=team)
    _, key = create_access_token(team=team, kind=AccessToken.Kind.PERSONAL, user=other.user)
    history = [
        {"role": "user", "content": "Name a cat."},
        {"role": "assistant", "content": "Miso."},
        {"role": "user", "content": "Another?"},
    ]

    second = ask(bearer_client(key), {"model": agent.handle, "messages": history})

    assert second.status_code == 200
    assert second["Genie-Session"] != first["Genie-Session"]


def test_genie_session_with_a_contradicting_history_is_409_history_mismatch(api, agent, model, worker):
    model.script(agent.model, [("text", "Miso.")])
    first = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Name a cat."}]})
    contradicting = [
        {"role": "user", "content": "Name a dog."},
        {"role": "assistant", "content": "Rex."},
        {"role": "user", "content": "Another?"},
    ]

    response = ask(api, {"model": agent.handle, "messages": contradicting}, HTTP_GENIE_SESSION=first["Genie-Session"])

    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("history_mismatch", "invalid_request_error")
    assert Message.objects.count() == 2


def test_genie_session_with_the_stored_history_or_none_continues(api, agent, model, worker):
    model.script(agent.model, [("text", "Miso.")], [("text", "Luna.")], [("text", "Tom.")])
    first = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Name a cat."}]})
    session = first["Genie-Session"]
    resent = [
        {"role": "user", "content": "Name a cat."},
        {"role": "assistant", "content": "Miso."},
        {"role": "user", "content": "Another?"},
    ]

    second = ask(api, {"model": agent.handle, "messages": resent}, HTTP_GENIE_SESSION=session)
    third = ask(
        api, {"model": agent.handle, "messages": [{"role": "user", "content": "One more?"}]}, HTTP_GENIE_SESSION=session
    )

    assert (second.status_code, third.status_code) == (200, 200)
    assert Session.objects.count() == 1
    assert Message.objects.count() == 6


def test_the_request_that_answers_a_call_sets_the_next_model_calls(api, agent, model, worker):
    """An OpenAI client sends its instructions, settings and tools with every request; an
    Agents SDK handoff changes them between the call and its result."""
    model.script(
        agent.model,
        [("text", "Looking. "), ("tool_call", {"id": "m1", "name": "get_weather", "arguments": '{"city": "Oslo"}'})],
        [("text", '{"setup": "Why?", "punchline": "Sun."}')],
    )
    question = {"role": "user", "content": "Weather joke?"}
    first = ask(api, {"model": agent.handle, "messages": [question], "tools": [WEATHER]})
    message = first.json()["choices"][0]["message"]
    answered = [question, message, {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "Sunny"}]

    second = ask(
        api,
        {
            "model": agent.handle,
            "messages": [{"role": "system", "content": "Answer as a joke."}, *answered],
            "response_format": JOKE,
            "temperature": 0.9,
        },
    )

    assert second.status_code == 200, second.json()
    assert json.loads(second.json()["choices"][0]["message"]["content"]) == {"setup": "Why?", "punchline": "Sun."}
    sent = sent_to_model(model, agent)
    assert "tools" not in sent
    assert (sent["response_format"], sent["temperature"]) == (JOKE, 0.9)
    assert [m["content"] for m in sent["messages"] if m["role"] == "system"][-1] == "Answer as a joke."
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "m1", "content": '"Sunny"'}
    assert Run.objects.get().status == Run.Status.SUCCEEDED  # the strict check reads the last call's reply only


def test_a_client_schema_keeps_its_key_order_to_the_model(api, agent, model, worker):
    model.script(agent.model, [("text", "{}")])
    properties = {"zeta": {"type": "string"}, "alpha": {"type": "integer"}, "mid": {"type": "boolean"}}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": properties}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "o", "schema": {"properties": properties}}}

    ask(
        api,
        {
            "model": agent.handle,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [tool],
            "response_format": response_format,
        },
    )

    sent = sent_to_model(model, agent)
    assert list(sent["tools"][0]["function"]["parameters"]["properties"]) == ["zeta", "alpha", "mid"]
    assert list(sent["response_format"]["json_schema"]["schema"]["properties"]) == ["zeta", "alpha", "mid"]


def test_the_agents_api_reads_and_sets_allow_client_settings(api, secret_api, agent, worker):
    url = f"/api/v1/agents/{agent.handle}"
    assert secret_api.get(url).json()["allow_client_settings"] is True

    changed = secret_api.patch(url, {"allow_client_settings": False}, format="json")
    refused = ask(api, {"model": agent.handle, "messages": [{"role": "user", "content": "Hi"}], "seed": 1})

    assert changed.json()["allow_client_settings"] is False
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "seed")
