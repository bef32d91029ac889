"""MCP tools: a Model Context Protocol server over Streamable HTTP (the ``mcp`` package,
2.x), each of its tools offered to the model as ``<name>__<tool>``.

Every request goes through the egress guard (``genie.egress.guarded_async_client``,
handed to the SDK's ``streamable_http_client``). The worker is sync: ``offers`` and
``call`` each run one short connection (connect, negotiate, one request, close) in their
own event loop with ``asyncio.run``, bounded as a whole by the definition's ``timeout``.

Listing: ``tools/list`` (every page) at ``server_url``, without the end user's token (a
listing is shared by all users of the server), kept in this process for
``LISTING_TTL`` seconds per ``server_url``. A failed listing raises ToolError (the loop
then offers nothing from this definition) and forgets the cached one; so does a call
the server answers with an unknown-tool error. ``allowed_tools`` (when not None) keeps
only the named tools; a tool whose offered name would not be a valid tool name
(``^[A-Za-z0-9_-]{1,64}$``) is not offered, nor one whose ``inputSchema`` the schema
check refuses (``runs.tools.schema``: a ``$ref`` outside the schema, a pattern RE2
cannot run).

Result of ``tools/call`` → the call's output:
- ``is_error`` (``isError``): ToolError with the result's text (what the server wrote for
  the model), cut to ``MAX_ERROR_CHARS``;
- ``structured_content`` (``structuredContent``) present: that JSON value;
- else the text blocks joined with newlines, as a string (JSON text stays text); any
  other block (image, audio, resource) stands as ``[<type>]``.
A protocol error, a timeout, a refused or unreachable destination and anything else that
goes wrong is a ToolError with a short message; the model reads it.

With ``CallContext.access_token`` set, a call sends ``Authorization: Bearer <token>``.

Each ``tools/call`` names the call in its request's ``_meta``: ``{"genie/idempotency_key":
<call_id>}``, the identity a webhook gets as ``Idempotency-Key``. A call sent again (an
``idempotent`` tool's, after its worker died) carries the same key, so the server can
de-duplicate; a tool reads it from its request's ``_meta`` (``ctx.request_context.meta`` in
the SDK's ``MCPServer``). It is not an HTTP header: each call's connection sends an
``initialize`` first, which a header-keyed de-duplication would take for the call.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx2
from rest_framework import serializers

from genie.egress import EgressRefused, guarded_async_client, validate_public_url
from runs.tools import CallContext, OfferedTool, ToolError, ToolSpec
from runs.tools.schema import schema_problem

# The ``mcp`` SDK is imported where it is used: the web process imports this module only
# for the kind's definition fields (``McpTool.spec_fields``, when an agent's tools are
# validated) and never speaks MCP; importing the SDK costs over a second.
if TYPE_CHECKING:
    from mcp.client import Client
    from mcp.types import CallToolResult

logger = logging.getLogger(__name__)

LISTING_TTL = 60.0
MAX_LIST_PAGES = 20
MAX_ERROR_CHARS = 1000
SEPARATOR = "__"
OFFERED_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
CLIENT_INFO = {"name": "genie", "version": "1"}
IDEMPOTENCY_META_KEY = "genie/idempotency_key"

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteTool:
    """One tool as the server lists it."""

    name: str
    description: str
    input_schema: dict[str, Any]


# server_url → (monotonic time listed, tools). Worker threads share it: every access
# holds the lock; the listing itself does not (two threads may list the same server at
# once after expiry; the later answer wins, both are correct).
_listings: dict[str, tuple[float, tuple[RemoteTool, ...]]] = {}
_listings_lock = threading.Lock()


def cached_listing(server_url: str) -> tuple[RemoteTool, ...] | None:
    with _listings_lock:
        entry = _listings.get(server_url)
        if entry is None or time.monotonic() - entry[0] > LISTING_TTL:
            return None
        return entry[1]


def remember_listing(server_url: str, tools: tuple[RemoteTool, ...]) -> None:
    with _listings_lock:
        _listings[server_url] = (time.monotonic(), tools)


def forget_listing(server_url: str) -> None:
    with _listings_lock:
        _listings.pop(server_url, None)


class McpTool:
    kind = "mcp"
    runs_on_server = True
    required_fields = ("server_url",)

    def spec_fields(self) -> dict[str, serializers.Field]:
        return {
            "server_url": serializers.URLField(
                required=False, allow_blank=True, default="", validators=[validate_public_url]
            ),
            "allowed_tools": serializers.ListField(
                child=serializers.CharField(max_length=200),
                required=False,
                allow_null=True,
                default=None,
                max_length=200,
            ),
        }

    def offers(self, spec: ToolSpec) -> list[OfferedTool]:
        tools = cached_listing(spec.server_url)
        if tools is None:
            try:
                tools = run_bounded(
                    lambda: list_tools(spec.server_url, request_timeout=spec.timeout), timeout=spec.timeout
                )
            except ToolError:
                forget_listing(spec.server_url)
                raise
            remember_listing(spec.server_url, tools)
        offered = []
        for tool in tools:
            if spec.allowed_tools is not None and tool.name not in spec.allowed_tools:
                continue
            name = f"{spec.name}{SEPARATOR}{tool.name}"
            if not OFFERED_NAME.fullmatch(name):
                continue
            problem = schema_problem(tool.input_schema)
            if problem is not None:  # never validated with ``re`` or a fetched $ref: not offered
                logger.warning("MCP tool %s of %s not offered: %s", tool.name, spec.server_url, problem)
                continue
            offered.append(
                OfferedTool(
                    name=name,
                    description=tool.description,
                    input_schema=copy.deepcopy(tool.input_schema),
                    spec=spec,
                    remote_name=tool.name,
                )
            )
        return offered

    def call(self, offered: OfferedTool, arguments: dict[str, Any], context: CallContext) -> Any:
        spec = offered.spec
        try:
            result = run_bounded(
                lambda: call_tool(
                    spec.server_url,
                    offered.remote_name,
                    arguments,
                    request_timeout=spec.timeout,
                    access_token=context.access_token,
                    idempotency_key=context.call_id,
                ),
                timeout=spec.timeout,
            )
        except ToolError as exc:
            if is_unknown_tool(exc.message):
                forget_listing(spec.server_url)
            raise
        if result.is_error:
            message = result_text(result) or "The tool reported an error."
            if is_unknown_tool(message):
                forget_listing(spec.server_url)
            raise ToolError(message[:MAX_ERROR_CHARS])
        if result.structured_content is not None:
            return result.structured_content
        return result_text(result)


@asynccontextmanager
async def connect(server_url: str, *, request_timeout: float, access_token: str | None = None) -> AsyncIterator[Client]:
    """A negotiated MCP client session to ``server_url`` whose every HTTP request passes
    the egress guard. ``request_timeout`` bounds each HTTP exchange and each MCP request;
    the caller bounds the whole (``run_bounded``)."""
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.types import Implementation

    headers = {"Authorization": f"Bearer {access_token}"} if access_token else None
    async with (
        guarded_async_client(timeout=request_timeout, headers=headers) as http,
        Client(
            streamable_http_client(server_url, http_client=http),
            read_timeout_seconds=request_timeout,
            client_info=Implementation(**CLIENT_INFO),
            cache=None,
        ) as client,
    ):
        yield client


async def list_tools(server_url: str, *, request_timeout: float) -> tuple[RemoteTool, ...]:
    tools: list[RemoteTool] = []
    async with connect(server_url, request_timeout=request_timeout) as client:
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools += [RemoteTool(tool.name, tool.description or "", tool.input_schema) for tool in page.tools]
            cursor = page.next_cursor
            if cursor is None:
                break
    return tuple(tools)


async def call_tool(
    server_url: str,
    name: str,
    arguments: dict[str, Any],
    *,
    request_timeout: float,
    access_token: str | None,
    idempotency_key: str,
) -> CallToolResult:
    async with connect(server_url, request_timeout=request_timeout, access_token=access_token) as client:
        return await client.call_tool(name, arguments, meta={IDEMPOTENCY_META_KEY: idempotency_key})


def run_bounded(work: Callable[[], Awaitable[T]], *, timeout: float) -> T:
    """Run ``work()`` in a new event loop (the calling thread has none), within
    ``timeout`` seconds; every failure becomes a ToolError."""

    async def bounded() -> T:
        with anyio.fail_after(timeout):
            return await work()

    try:
        return asyncio.run(bounded())
    except Exception as exc:
        raise tool_error(exc, timeout) from exc


def tool_error(exc: BaseException, timeout: float) -> ToolError:
    """The ToolError for what went wrong, found in ``exc``, the exception groups of the
    SDK's task groups and their causes."""
    from mcp.shared.exceptions import MCPError

    causes = list(exception_chain(exc))
    for cause in causes:
        if isinstance(cause, EgressRefused):
            return ToolError(cause.message)
    for cause in causes:
        if isinstance(cause, TimeoutError | httpx2.TimeoutException):
            return ToolError(f"The MCP server did not answer within {timeout:g} s.")
        if isinstance(cause, MCPError):
            return ToolError(f"The MCP server answered with an error: {cause.message}"[:MAX_ERROR_CHARS])
        if isinstance(cause, httpx2.TransportError | OSError):
            return ToolError("The MCP server could not be reached.")
    logger.warning("MCP request failed", exc_info=exc)
    return ToolError("The MCP server could not be used.")


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the members of exception groups and the causes, depth first, each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack += reversed(current.exceptions)
        for linked in (current.__context__, current.__cause__):
            if linked is not None:
                stack.append(linked)


def result_text(result: CallToolResult) -> str:
    from mcp.types import TextContent

    return "\n".join(block.text if isinstance(block, TextContent) else f"[{block.type}]" for block in result.content)


def is_unknown_tool(message: str) -> bool:
    # MCPServer answers "Unknown tool: <name>" (an error result); other servers send a
    # JSON-RPC error with the same words, as the specification's example does.
    return "unknown tool" in message.lower()
