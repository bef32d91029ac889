"""The AI SDK's OpenAI-compatible provider (``@ai-sdk/openai-compatible`` with ``ai`` 7,
pinned in tests/aisdk) against ``/v1`` on the live stack: ``generateText`` with a tool the
SDK runs itself (a client tool to Genie: the run waits, the SDK's next request answers it
and the same run goes on), and ``generateObject`` (a JSON schema forwarded as
``response_format``)."""

from __future__ import annotations

import json
import subprocess

import pytest

from runs.models import Run, ToolCall

pytestmark = pytest.mark.live


def test_generate_text_with_a_tool_and_generate_object(live, aisdk_installed):
    live.script(
        [("tool_call", {"id": "call_w", "name": "weather", "arguments": '{"city": "Paris"}'})],
        [("text", "Sunny in Paris.")],
        [("text", '{"name": "Miso", "age": 3}')],
    )

    done = subprocess.run(
        ["node", "openai_compatible.mjs", live.base_url, live.key, live.agent.handle],
        cwd=aisdk_installed,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["toolCalls"] == ["Paris"]  # the SDK ran its tool once, with the model's input
    assert result["text"] == "Sunny in Paris."
    assert result["steps"] == 2
    assert result["object"] == {"name": "Miso", "age": 3}
    requests = live.fake_llm.requests[live.agent.model]
    assert [tool["function"]["name"] for tool in requests[0]["tools"]] == ["weather"]
    answer = requests[1]["messages"][-1]  # the SDK's tool result, passed on by Genie
    assert (answer["role"], answer["tool_call_id"]) == ("tool", "call_w")
    assert json.loads(answer["content"]) == {"city": "Paris", "forecast": "sunny"}
    assert requests[2]["response_format"]["type"] == "json_schema"
    assert requests[2]["response_format"]["json_schema"]["schema"]["required"] == ["name", "age"]
    call = ToolCall.objects.get(run__session__agent=live.agent, tool_name="weather")
    assert call.status == ToolCall.Status.SUCCEEDED
    assert call.run.status == Run.Status.SUCCEEDED
    assert call.run.client_tools  # offered as the client's own tool
