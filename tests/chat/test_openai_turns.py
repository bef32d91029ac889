"""What an OpenAI client asks of a turn, honoured: its instructions and sampling settings,
its tools, its response format, its stateless history. In process: the request goes
through ``/v1/chat/completions``, the turn runs inline (the worker's own loop) against the
scripted model (``tests/fakellm.py``), which records what it was sent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.test import Client

from chat.models import Message, Session
from runs import loop, tasks
from runs.models import Run

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
def worker() -> Iterator[dict[str, list[Any]]]:
    """Each turn runs inline when the view waits for it (a paused run's continuation
    too); the tasks enqueued are recorded instead of sent."""
    sent: dict[str, list[Any]] = defaultdict(list)

    def wait(*, run: Run, timeout: float, or_pause: bool = False) -> bool:
        for pk in [*sent.pop("execute_run", []), *sent.pop("continue_run", [])]:
            loop.execute_run(pk)
        return True

    patches = [
        mock.patch.object(task, "delay", side_effect=lambda *args, name=name: sent[name].append(args[0]))
        for name, task in {
            "execute_run": tasks.execute_run,
            "continue_run": tasks.continue_run,
            "generate_title": tasks.generate_title,
        }.items()
    ]
    patches.append(mock.patch("protocols.openai.views.wait_for_finish", side_effect=wait))
    for patch in patches:
        patch.start()
    yield sent
    for patch in patches:
        patch.stop()


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


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_any_unknown_v1_path_is_an_openai_404_for_every_method_even_with_csrf_checks(method, personal_key):
    client = Client(enforce_csrf_checks=True)

    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}

    response = getattr(client, method)("/v1/responses", **body, HTTP_AUTHORIZATION=f"Bearer {personal_key}")

    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("unknown_url", "invalid_request_error")
    assert error["message"] == f"Invalid URL ({method.upper()} /v1/responses)"
