"""JSON Schemas from outside reach nothing but the value they describe (issue 26, findings
6 and 8): tools' input schemas (an agent's, an MCP server's) and /v1 clients'
structured-output schemas. A ``$ref`` is never fetched (a real loopback server must
receive no request), and ``pattern``/``patternProperties`` are matched without
backtracking (RE2); what cannot be honoured is refused when the agent is saved (or the
request made), as a 400 naming the field."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chat.models import Session
from runs import loop
from runs.models import Run, ToolCall
from runs.options import ClientSettings
from runs.tools import ToolSpec
from runs.tools import mcp as mcp_tool
from runs.tools.schema import input_problem
from tests.factories import RunFactory
from tests.runs.conftest import published_data, text, tool_call
from tests.webhooks import WebhookReceiver

pytestmark = pytest.mark.django_db(transaction=True)

# Exponential for a backtracking engine on "a" * n + "!": 2**64 steps, never done.
EVIL_PATTERN = "^(a+)+$"
EVIL_INPUT = "a" * 64 + "!"


class SchemaHost:
    """A loopback HTTP server that would serve any schema; records every request."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host.paths.append(self.path)
                body = b'{"type": "string", "description": "fetched from the schema host"}'
                self.send_response(200)
                self.send_header("content-type", "application/schema+json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/schema.json") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def schema_host() -> Iterator[SchemaHost]:
    host = SchemaHost()
    yield host
    host.server.shutdown()


def agent_body(input_schema: dict, url: str = "https://tools.example.com/hook") -> dict:
    tool = {"name": "lookup", "kind": "webhook", "url": url, "input_schema": input_schema}
    return {"handle": "shop", "name": "Shop", "model": "m", "tools": [tool]}


def remote_ref_schemas(host: SchemaHost) -> list[dict]:
    return [
        {"type": "object", "properties": {"city": {"$ref": host.url()}}},
        {"$id": host.url("/base/"), "type": "object", "properties": {"city": {"$ref": "city.json"}}},
        {"type": "object", "properties": {"city": {"$dynamicRef": host.url("/dynamic.json")}}},
        {"type": "object", "properties": {"city": {"$ref": "file:///etc/passwd"}}},
    ]


def test_a_ref_outside_the_schema_is_refused_at_save_and_never_fetched(secret_api, schema_host):
    for schema in remote_ref_schemas(schema_host):
        response = secret_api.post("/api/v1/agents", agent_body(schema), format="json")

        assert response.status_code == 400, schema
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        (problem,) = error["details"]["tools"]["0"]["input_schema"]
        assert "does not resolve within the schema" in problem
    assert schema_host.paths == []


def test_a_ref_within_the_schema_is_kept_and_validates(secret_api):
    schema = {
        "$id": "https://tools.example.com/schemas/lookup",
        "type": "object",
        "$defs": {"city": {"type": "string", "minLength": 2}},
        "properties": {"city": {"$ref": "#/$defs/city"}},
        "required": ["city"],
    }

    response = secret_api.post("/api/v1/agents", agent_body(schema), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["tools"][0]["input_schema"] == schema
    assert input_problem(schema, {"city": "Oslo"}) is None
    assert "too short" in input_problem(schema, {"city": "O"})


def stored_tool_run(receiver: WebhookReceiver, input_schema: dict) -> Run:
    """A run whose agent's tool was stored as is (before the save-time rules existed)."""
    tool = {"name": "lookup", "kind": "webhook", "url": receiver.url, "input_schema": input_schema}
    run = RunFactory(session__agent__tools=[tool])
    receiver.secret = run.session.agent.webhook_secret
    return run


@pytest.mark.usefixtures("fast_settings")
def test_a_stored_schema_with_a_remote_ref_fails_the_call_without_fetching(script, enqueued, receiver, schema_host):
    for schema in remote_ref_schemas(schema_host):
        run = stored_tool_run(receiver, schema)
        provider = script(tool_call("lookup", '{"city": "Oslo"}'), text("Sorry."))

        loop.execute_run(run.pk)

        (error,) = published_data(run, "tool-output-error")
        assert "input schema cannot be used" in error["errorText"]
        assert "input schema cannot be used" in provider.requests[1].messages[-1]["content"]
        assert ToolCall.objects.get(run=run).status == ToolCall.Status.FAILED
        assert Run.objects.get(pk=run.pk).status == Run.Status.SUCCEEDED
    assert schema_host.paths == []
    assert receiver.calls == []


def test_an_mcp_tool_whose_schema_refers_outside_itself_is_not_offered(schema_host):
    server_url = "http://127.0.0.1:9/mcp"  # never reached: the listing is in the cache
    listing = (
        mcp_tool.RemoteTool("remote", "", {"type": "object", "properties": {"a": {"$ref": schema_host.url()}}}),
        mcp_tool.RemoteTool("evil", "", {"type": "object", "properties": {"a": {"pattern": "(?=a)b"}}}),
        mcp_tool.RemoteTool("fine", "", {"type": "object", "properties": {"a": {"type": "string"}}}),
    )
    mcp_tool.remember_listing(server_url, listing)
    try:
        offered = mcp_tool.McpTool().offers(ToolSpec(name="shop", kind="mcp", server_url=server_url))
    finally:
        mcp_tool.forget_listing(server_url)

    assert [tool.name for tool in offered] == ["shop__fine"]
    assert schema_host.paths == []


@pytest.mark.parametrize(
    ("where", "schema"),
    [
        ("pattern", {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=a)b"}}}),
        ("pattern", {"type": "object", "properties": {"code": {"type": "string", "pattern": r"(a)\1"}}}),
        ("patternProperties", {"type": "object", "patternProperties": {"(?<!x)y": {"type": "string"}}}),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_at_save_naming_it(secret_api, where, schema):
    response = secret_api.post("/api/v1/agents", agent_body(schema), format="json")

    assert response.status_code == 400
    (problem,) = response.json()["error"]["details"]["tools"]["0"]["input_schema"]
    assert problem.startswith(f"{where} ")
    assert "RE2" in problem


def test_unevaluated_properties_beside_pattern_properties_is_refused_at_save(secret_api):
    schema = {"type": "object", "patternProperties": {"^x": {}}, "unevaluatedProperties": False}

    response = secret_api.post("/api/v1/agents", agent_body(schema), format="json")

    assert response.status_code == 400
    (problem,) = response.json()["error"]["details"]["tools"]["0"]["input_schema"]
    assert "unevaluatedProperties" in problem


@pytest.mark.timeout(60)  # a backtracking engine never ends: the test fails by its timeout
@pytest.mark.usefixtures("fast_settings")
def test_a_catastrophic_pattern_is_matched_in_linear_time(secret_api, script, enqueued, receiver):
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": EVIL_PATTERN}},
        "patternProperties": {EVIL_PATTERN: {"type": "string"}},
        "additionalProperties": False,
    }
    saved = secret_api.post("/api/v1/agents", agent_body(schema), format="json")
    assert saved.status_code == 201  # RE2 runs it: a valid pattern, only a dangerous engine
    run = stored_tool_run(receiver, schema)
    script(tool_call("lookup", f'{{"code": "{EVIL_INPUT}"}}'), text("Sorry."))

    loop.execute_run(run.pk)

    (error,) = published_data(run, "tool-output-error")
    assert "does not match" in error["errorText"]
    assert receiver.calls == []
    assert "not match any of the regexes" in input_problem(schema, {EVIL_INPUT: "x"})
    assert input_problem(schema, {"code": "aaaa", "aaa": "x"}) is None


# --- structured output: the schema a /v1 client sends in response_format ---------------


def test_a_response_format_schema_referring_outside_itself_is_400_and_never_fetched(api, agent, schema_host):
    lookaround = {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=a)b"}}}
    for schema in [*remote_ref_schemas(schema_host), lookaround]:
        response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
        body = {
            "model": agent.handle,
            "messages": [{"role": "user", "content": "x"}],
            "response_format": response_format,
        }

        response = api.post("/v1/chat/completions", body, format="json")

        assert response.status_code == 400, schema
        assert response.json()["error"]["param"] == "response_format.json_schema.schema"
    assert schema_host.paths == []
    assert not Session.objects.exists()


@pytest.mark.timeout(60)  # a backtracking engine never ends: the test fails by its timeout
def test_a_strict_reply_is_checked_against_a_catastrophic_pattern_in_linear_time(schema_host):
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL_PATTERN}}}
    strict = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    remote = {**strict, "json_schema": {**strict["json_schema"], "schema": remote_ref_schemas(schema_host)[0]}}

    refused = ClientSettings(response_format=strict).output_error(json.dumps({"code": EVIL_INPUT}))
    stored_remote = ClientSettings(response_format=remote).output_error(json.dumps({"city": "Oslo"}))

    assert refused.startswith("The reply does not match the schema at code:")
    assert ClientSettings(response_format=strict).output_error(json.dumps({"code": "aaa"})) is None
    assert stored_remote.startswith("The response_format schema cannot be used")
    assert schema_host.paths == []


def test_a_responses_text_format_schema_referring_outside_itself_is_400_and_never_fetched(api, agent, schema_host):
    for schema in remote_ref_schemas(schema_host):
        text_format = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}

        response = api.post(
            "/v1/responses", {"model": agent.handle, "input": "x", "text": {"format": text_format}}, format="json"
        )

        assert response.status_code == 400, response.json()
    assert schema_host.paths == []
    assert not Session.objects.exists()
