"""The provider registry, and the ``openai`` provider against a real OpenAI-compatible HTTP server (the scripted fake):
tool definitions go out in OpenAI's shape, streamed ``delta.tool_calls`` come back as
``ToolCallDelta`` fragments."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings

from runs.providers import PROVIDERS, ProviderError, ProviderRequest, ToolDefinition, get_provider


def test_tools_are_offered_and_streamed_tool_calls_are_read(fake_llm):
    model = "provider-tool-call"
    fake_llm.script(
        model,
        [("text", "Checking. "), ("tool_call", {"id": "call_abc", "name": "lookup", "arguments": '{"q": "cats"}'})],
    )
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    request = ProviderRequest(
        model=model,
        messages=[{"role": "user", "content": "find cats"}],
        temperature=0,
        max_tokens=50,
        base_url=fake_llm.base_url,
        tools=(ToolDefinition(name="lookup", description="Search the catalogue.", input_schema=schema),),
    )

    chunks = list(get_provider("openai").stream(request))

    sent = fake_llm.requests[model][-1]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "lookup", "description": "Search the catalogue.", "parameters": schema},
        }
    ]
    assert "".join(chunk.text for chunk in chunks) == "Checking. "
    fragments = [delta for chunk in chunks for delta in chunk.tool_calls]
    assert {delta.index for delta in fragments} == {0}
    assert fragments[0].id == "call_abc"
    assert fragments[0].name == "lookup"
    assert "".join(delta.arguments for delta in fragments) == '{"q": "cats"}'
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ["tool_calls"]


def test_no_tools_sends_no_tools_field(fake_llm):
    model = "provider-no-tools"
    fake_llm.script(model, [("text", "hi")])
    request = ProviderRequest(model=model, messages=[], temperature=0, max_tokens=5, base_url=fake_llm.base_url)

    assert "".join(chunk.text for chunk in get_provider("openai").stream(request)) == "hi"
    assert "tools" not in fake_llm.requests[model][-1]


def test_the_clients_settings_go_out_in_openais_names(fake_llm):
    model = "provider-client-settings"
    fake_llm.script(model, [("text", "{}")])
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
    }
    request = ProviderRequest(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        max_tokens=20,
        base_url=fake_llm.base_url,
        tools=(ToolDefinition(name="lookup"),),
        top_p=0.5,
        presence_penalty=0.1,
        frequency_penalty=-0.2,
        seed=7,
        stop=("END",),
        response_format=response_format,
        tool_choice="required",
    )

    list(get_provider("openai").stream(request))

    sent = fake_llm.requests[model][-1]
    assert {name: sent[name] for name in ("temperature", "max_tokens", "top_p", "seed", "stop")} == {
        "temperature": 0.3,
        "max_tokens": 20,
        "top_p": 0.5,
        "seed": 7,
        "stop": ["END"],
    }
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.1, -0.2)
    assert sent["response_format"] == response_format
    assert sent["tool_choice"] == "required"


def test_settings_not_asked_for_are_not_sent(fake_llm):
    model = "provider-no-settings"
    fake_llm.script(model, [("text", "hi")])
    request = ProviderRequest(model=model, messages=[], temperature=0, max_tokens=5, base_url=fake_llm.base_url)

    list(get_provider("openai").stream(request))

    sent = fake_llm.requests[model][-1]
    assert not {"top_p", "seed", "stop", "presence_penalty", "response_format", "tool_choice"} & set(sent)


def test_the_agent_offers_exactly_the_providers_the_registry_runs():
    from chat.models import Agent

    offered = [name for name, _ in Agent._meta.get_field("provider").choices]

    assert offered == list(PROVIDERS)
    for name in offered:
        assert get_provider(name).name == name
    with pytest.raises(ProviderError, match="unknown_provider"):
        get_provider("nope")


def test_a_worker_imports_its_providers_when_it_is_ready_not_at_its_first_turn():
    """The ``openai`` SDK takes about 0.3 s to import: a worker's first turn must not wait for it."""
    from celery.signals import worker_ready

    from genie.celery import preload_providers

    assert any(receiver() is preload_providers for _, receiver in worker_ready.receivers)
    script = (
        "import sys, django; django.setup(); from genie.celery import preload_providers; "
        "assert 'openai' not in sys.modules; preload_providers(); assert 'openai' in sys.modules"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "genie.settings"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=settings.BASE_DIR, timeout=60)
