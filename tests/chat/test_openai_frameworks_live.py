"""Genie's agents as models for the agent frameworks people already have, through
``/v1/chat/completions`` against the live stack (Daphne, a Celery worker, the scripted
model in its ``auto`` mode: a compliant model's answer to each request):

- LangChain's own standard test suite for chat models (``ChatModelIntegrationTests``,
  langchain-tests) through ``ChatOpenAI``, with the suite's default capabilities: tool
  calling, tool choice and structured output on;
- the OpenAI Agents SDK with ``OpenAIChatCompletionsModel``: a function tool, a handoff,
  an ``output_type``;
- pydantic-ai's ``OpenAIChatModel``: a tool and an ``output_type``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests
from pydantic import BaseModel

from chat.models import Session
from runs.models import Run, ToolCall

pytestmark = pytest.mark.live

AUTO = [("auto", None)]
# What the suite's model fixture reads: set per test by ``_genie`` (the live stack's own
# agent and key), as its properties are read when the model is built.
PARAMS: dict[str, Any] = {}


class TestChatOpenAIThroughGenie(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _genie(self, live) -> None:
        live.script(AUTO)
        PARAMS.update(
            model=live.agent.handle,
            base_url=f"{live.base_url}/v1",
            api_key=live.key,
            stream_usage=True,  # ask for the usage chunk (ChatOpenAI asks only its own base URL)
        )

    @property
    def chat_model_class(self) -> type[ChatOpenAI]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(PARAMS)


# --- the OpenAI Agents SDK --------------------------------------------------------------


class Forecast(BaseModel):
    city: str
    celsius: int


@pytest.fixture
def agents_model(live):
    from agents import OpenAIChatCompletionsModel, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # no traces to OpenAI's servers
    live.script(AUTO)
    client = AsyncOpenAI(base_url=f"{live.base_url}/v1", api_key=live.key, max_retries=0, timeout=30)
    return OpenAIChatCompletionsModel(model=live.agent.handle, openai_client=client)


def test_the_agents_sdk_calls_a_function_tool_hands_off_and_gets_its_output_type(live, agents_model):
    from agents import Agent, Runner, function_tool

    looked_up: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        looked_up.append(city)
        return "Sunny, 21 degrees."

    forecaster = Agent(
        name="Forecaster", instructions="Answer as a forecast.", model=agents_model, output_type=Forecast
    )
    triage = Agent(
        name="Triage",
        instructions="Look the weather up, then hand off to the forecaster.",
        model=agents_model,
        tools=[get_weather],
        handoffs=[forecaster],
    )

    result = Runner.run_sync(triage, "What is the weather in 'Oslo' at 21 degrees?")

    assert looked_up == ["Oslo"]
    assert result.last_agent is forecaster
    assert result.final_output == Forecast(city="Oslo", celsius=21)
    bodies = live.fake_llm.requests[live.agent.model]
    assert bodies[-1]["response_format"]["type"] == "json_schema"
    assert [m["content"] for m in bodies[0]["messages"] if m["role"] == "system"][-1].startswith("Look the weather up")
    # Each client tool call paused a run, and the next request's results continued it.
    calls = ToolCall.objects.filter(run__session__agent=live.agent).order_by("created_at")
    assert [call.tool_name for call in calls] == ["get_weather", "transfer_to_forecaster"]
    assert {call.status for call in calls} == {ToolCall.Status.SUCCEEDED}
    assert Run.objects.filter(session__agent=live.agent).exclude(status=Run.Status.SUCCEEDED).count() == 0


# --- pydantic-ai ------------------------------------------------------------------------


def test_pydantic_ai_calls_a_tool_and_returns_its_output_type(live):
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    live.script(AUTO)
    model = OpenAIChatModel(
        live.agent.handle, provider=OpenAIProvider(base_url=f"{live.base_url}/v1", api_key=live.key)
    )
    agent = Agent(model, output_type=Forecast, instructions="Forecast the weather.")
    looked_up: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        looked_up.append(city)
        return "Sunny, 21 degrees."

    result = agent.run_sync("What is the weather in 'Oslo' at 21 degrees?")

    assert looked_up == ["Oslo"]
    assert result.output == Forecast(city="Oslo", celsius=21)
    bodies = live.fake_llm.requests[live.agent.model]
    assert any(m["content"] == "Forecast the weather." for m in bodies[0]["messages"] if m["role"] == "system")
    assert Session.objects.filter(agent=live.agent).count() == 1  # one conversation, one session
