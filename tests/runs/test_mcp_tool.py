"""The ``mcp`` tool kind against a real MCP server: the ``mcp`` package's own ``MCPServer``
serving Streamable HTTP on a loopback port (uvicorn in a background thread), with every
HTTP request it receives recorded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as ServerToolError

from runs.tools import CallContext, OfferedTool, ToolError, ToolSpec, get_tool
from runs.tools import mcp as mcp_tool

CONTEXT = CallContext(call_id="call-1", session_uuid="session-1", run_uuid="run-1", user_id="user-1")


def build_server() -> MCPServer:
    server = MCPServer("test-tools", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool(structured_output=False)
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails."""
        raise ServerToolError(f"cannot: {reason}")

    @server.tool(structured_output=False)
    def whoami(ctx: Context) -> str:
        """The idempotency key of this request (its ``_meta``)."""
        return (ctx.request_context.meta or {}).get("genie/idempotency_key", "")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Answers after a while."""
        await anyio.sleep(seconds)
        return "late"

    return server


class LiveMcpServer:
    """``build_server()`` on 127.0.0.1, recording each HTTP request (method, headers)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        app = build_server().streamable_http_app()

        async def recording(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {name.decode(): value.decode() for name, value in scope["headers"]}
                self.requests.append({"method": scope["method"], "headers": headers})
            await app(scope, receive, send)

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        config = uvicorn.Config(recording, log_level="warning", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "The MCP server did not start."
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/mcp"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[LiveMcpServer]:
    server = LiveMcpServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_cached_listings() -> None:
    mcp_tool._listings.clear()


def mcp_spec(url: str, **fields: Any) -> ToolSpec:
    return ToolSpec.from_dict({"name": "calc", "kind": "mcp", "server_url": url, **fields})


def offered_named(spec: ToolSpec, name: str) -> OfferedTool:
    return next(tool for tool in get_tool("mcp").offers(spec) if tool.name == name)


def test_offers_each_server_tool_with_the_definition_name_as_prefix(mcp_server):
    offered = get_tool("mcp").offers(mcp_spec(mcp_server.url))

    assert {tool.name for tool in offered} == {"calc__add", "calc__shout", "calc__fail", "calc__slow", "calc__whoami"}
    add = next(tool for tool in offered if tool.name == "calc__add")
    assert add.remote_name == "add"
    assert add.description == "Add two integers."
    assert add.input_schema["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert add.input_schema["required"] == ["a", "b"]
    assert add.input_error({"a": 1, "b": "two"}) is not None


def test_allowed_tools_keeps_only_the_named_tools(mcp_server):
    offered = get_tool("mcp").offers(mcp_spec(mcp_server.url, allowed_tools=["add", "shout", "missing"]))

    assert [tool.name for tool in offered] == ["calc__add", "calc__shout"]


def test_call_returns_the_structured_content(mcp_server):
    spec = mcp_spec(mcp_server.url)

    output = get_tool("mcp").call(offered_named(spec, "calc__add"), {"a": 2, "b": 3}, CONTEXT)

    assert output == {"result": 5}


def test_a_call_names_its_call_id_as_the_idempotency_key_in_its_meta(mcp_server):
    """As a webhook's ``Idempotency-Key``: the server can de-duplicate a call sent again."""
    spec = mcp_spec(mcp_server.url)

    output = get_tool("mcp").call(offered_named(spec, "calc__whoami"), {}, CONTEXT)

    assert output == "call-1"


def test_call_without_structured_content_returns_the_text(mcp_server):
    spec = mcp_spec(mcp_server.url)

    output = get_tool("mcp").call(offered_named(spec, "calc__shout"), {"text": "hi there"}, CONTEXT)

    assert output == "HI THERE"


def test_an_error_result_is_a_tool_error_with_the_server_text(mcp_server):
    spec = mcp_spec(mcp_server.url)

    with pytest.raises(ToolError, match="cannot: no reason"):
        get_tool("mcp").call(offered_named(spec, "calc__fail"), {"reason": "no reason"}, CONTEXT)


def test_a_call_sends_the_end_user_token(mcp_server):
    spec = mcp_spec(mcp_server.url)
    offered = offered_named(spec, "calc__add")
    before = len(mcp_server.requests)

    get_tool("mcp").call(offered, {"a": 1, "b": 1}, CallContext(**{**CONTEXT.__dict__, "access_token": "tok-123"}))

    sent = mcp_server.requests[before:]
    assert sent
    assert all(request["headers"].get("authorization") == "Bearer tok-123" for request in sent)


def test_a_slow_tool_is_a_tool_error_after_the_timeout(mcp_server):
    spec = mcp_spec(mcp_server.url, timeout=0.5)
    offered = offered_named(spec, "calc__slow")
    started = time.monotonic()

    with pytest.raises(ToolError, match=r"did not answer within 0\.5 s"):
        get_tool("mcp").call(offered, {"seconds": 5}, CONTEXT)
    assert time.monotonic() - started < 3


def test_a_server_that_is_down_is_a_tool_error():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/mcp"
    spec = mcp_spec(url)
    offered = OfferedTool(
        name="calc__add", description="", input_schema={"type": "object"}, spec=spec, remote_name="add"
    )

    with pytest.raises(ToolError, match="could not be reached"):
        get_tool("mcp").offers(spec)
    with pytest.raises(ToolError, match="could not be reached"):
        get_tool("mcp").call(offered, {"a": 1, "b": 2}, CONTEXT)


def test_loopback_is_refused_without_the_operator_allowlist(mcp_server, settings):
    settings.GENIE_EGRESS_ALLOW = ""
    spec = mcp_spec(mcp_server.url)
    offered = OfferedTool(
        name="calc__add", description="", input_schema={"type": "object"}, spec=spec, remote_name="add"
    )
    before = len(mcp_server.requests)

    with pytest.raises(ToolError, match="non-public address"):
        get_tool("mcp").offers(spec)
    with pytest.raises(ToolError, match="non-public address"):
        get_tool("mcp").call(offered, {"a": 1, "b": 2}, CONTEXT)
    assert len(mcp_server.requests) == before


def test_a_second_offers_is_served_from_the_cache(mcp_server):
    spec = mcp_spec(mcp_server.url)
    first = get_tool("mcp").offers(spec)
    after_first = len(mcp_server.requests)

    second = get_tool("mcp").offers(mcp_spec(mcp_server.url, allowed_tools=["add"]))

    assert len(mcp_server.requests) == after_first
    assert [tool.name for tool in second] == ["calc__add"]
    assert second[0].input_schema == next(tool for tool in first if tool.name == "calc__add").input_schema


def test_an_expired_listing_is_fetched_again(mcp_server, monkeypatch):
    spec = mcp_spec(mcp_server.url)
    get_tool("mcp").offers(spec)
    after_first = len(mcp_server.requests)
    monkeypatch.setattr(mcp_tool, "LISTING_TTL", 0)

    get_tool("mcp").offers(spec)

    assert len(mcp_server.requests) > after_first


def test_a_call_to_an_unknown_tool_forgets_the_listing(mcp_server):
    spec = mcp_spec(mcp_server.url)
    get_tool("mcp").offers(spec)
    gone = OfferedTool(
        name="calc__gone", description="", input_schema={"type": "object"}, spec=spec, remote_name="gone"
    )

    with pytest.raises(ToolError, match="Unknown tool"):
        get_tool("mcp").call(gone, {}, CONTEXT)

    assert mcp_tool.cached_listing(mcp_server.url) is None


def test_a_failed_listing_forgets_the_cached_one(mcp_server, settings, monkeypatch):
    spec = mcp_spec(mcp_server.url)
    get_tool("mcp").offers(spec)
    monkeypatch.setattr(mcp_tool, "LISTING_TTL", 0)
    settings.GENIE_EGRESS_ALLOW = ""

    with pytest.raises(ToolError):
        get_tool("mcp").offers(spec)

    assert mcp_server.url not in mcp_tool._listings
