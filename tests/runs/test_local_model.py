"""The real local model (SmolLM2-135M through llama.cpp): in the worker, and behind
llama.cpp's own OpenAI-compatible server through the ``openai`` provider."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import jsonschema
import pytest

from runs.models import Run
from runs.providers import ProviderRequest
from runs.providers.local import LocalProvider, model_path
from tests.processes import free_port, wait_for

pytestmark = [pytest.mark.live, pytest.mark.model]


def test_local_provider_answers_with_the_embedded_model(live):
    live.agent.provider = "local"
    live.agent.model = "SmolLM2-135M-Instruct"
    live.agent.max_tokens = 24
    live.agent.save()
    created = live.start_session("Say hello.")

    read = live.read_stream(created["stream_url"], last_event_id=0, timeout=120)
    run = live.wait_run(created["run_uuid"], timeout=120)

    assert read.types[-1] == "finish"
    assert "error" not in read.types
    assert read.text.strip()
    assert run.status == Run.Status.SUCCEEDED
    assert run.agent_message.text == read.text
    # llama.cpp's stream reports no usage: the prompt's tokens are read from its context.
    assert read.events[-1].data["messageMetadata"]["usage"]["prompt_tokens"] > 10


@pytest.fixture(scope="module")
def llama_server_url(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--model_alias",
            "smollm2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 60, "llama.cpp server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_openai_provider_against_llama_cpp_server(live, llama_server_url):
    live.agent.provider = "openai"
    live.agent.base_url = llama_server_url
    live.agent.model = "smollm2"
    live.agent.max_tokens = 24
    live.agent.save()
    created = live.start_session("Say hello.")

    read = live.read_stream(created["stream_url"], last_event_id=0, timeout=120)
    run = live.wait_run(created["run_uuid"], timeout=120)

    assert "error" not in read.types, run.error_message
    assert read.text.strip()
    assert run.status == Run.Status.SUCCEEDED


def test_the_local_model_keeps_to_a_json_schema_the_client_asks_for():
    """llama.cpp builds a grammar from the schema: even SmolLM2-135M answers valid JSON."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "legs": {"type": "integer"}},
        "required": ["name", "legs"],
        "additionalProperties": False,
    }
    request = ProviderRequest(
        model="SmolLM2-135M-Instruct",
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        temperature=0.0,
        max_tokens=200,
        seed=1,
        response_format={"type": "json_schema", "json_schema": {"name": "animal", "schema": schema, "strict": True}},
    )

    text = "".join(chunk.text for chunk in LocalProvider().stream(request))

    jsonschema.validate(json.loads(text), schema)
