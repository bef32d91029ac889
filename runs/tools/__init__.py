"""Tools an agent's model may call, behind one small interface and a kind → class registry
(as providers are).

A tool definition lives on the agent (``Agent.tools``, validated by
``runs.serializers.ToolSpecSerializer``: the common fields, then the kind's own from
``Tool.spec_fields``). A ``Tool`` turns one definition into what the model is offered
(``offers``: a webhook or client tool offers itself, an MCP server each of its tools as
``<name>__<tool>``) and executes a call on the server (``call``; client tools are
executed by the client). A new kind is one module here and one line in ``TOOL_KINDS``.
A tool never touches the ORM and raises only ``ToolError``; the call's record is
``runs.models.ToolCall``, and a step's calls are driven by ``runs.tool_calls``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.utils.module_loading import import_string
from rest_framework import serializers

from runs.providers import ToolDefinition
from runs.tools.schema import input_problem, schema_problem

logger = logging.getLogger(__name__)

# kind → class. Imported on first use (MCP pulls in the ``mcp`` package).
TOOL_KINDS: dict[str, str] = {
    "webhook": "runs.tools.webhook.WebhookTool",
    "mcp": "runs.tools.mcp.McpTool",
    "client": "runs.tools.client.ClientTool",
}
MAX_TOOLS = 32
DEFAULT_TIMEOUT = 30
MAX_TIMEOUT = 120


class ToolError(Exception):
    """A call that did not produce an output; ``message`` is what the model is told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ToolSpec:
    """One tool definition as the agent stores it."""

    name: str
    kind: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    requires_approval: bool = False
    # Safe to run twice with the same call id: a call whose worker died during it is run
    # again (same ``call_id``, same ``Idempotency-Key``) instead of failing ``outcome_unknown``.
    idempotent: bool = False
    connection: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    url: str = ""  # webhook
    server_url: str = ""  # mcp
    allowed_tools: tuple[str, ...] | None = None  # mcp: the server's tools to offer (None: all)
    wait_for_result: bool = True  # client: False, a UI command the turn does not wait for

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolSpec:
        allowed = data.get("allowed_tools")
        return cls(
            name=data["name"],
            kind=data["kind"],
            description=data.get("description", ""),
            input_schema=data.get("input_schema") or {"type": "object"},
            requires_approval=bool(data.get("requires_approval", False)),
            idempotent=bool(data.get("idempotent", False)),
            connection=data.get("connection"),
            timeout=float(data.get("timeout") or DEFAULT_TIMEOUT),
            url=data.get("url", ""),
            server_url=data.get("server_url", ""),
            allowed_tools=tuple(allowed) if allowed is not None else None,
            wait_for_result=bool(data.get("wait_for_result", True)),
        )


@dataclass(frozen=True)
class OfferedTool:
    """A tool as the model sees it: ``name`` is what it calls."""

    name: str
    description: str
    input_schema: dict[str, Any]
    spec: ToolSpec
    remote_name: str = ""  # MCP: the server's own name of the tool

    def definition(self) -> ToolDefinition:
        return ToolDefinition(name=self.name, description=self.description, input_schema=self.input_schema)

    def input_error(self, arguments: dict[str, Any]) -> str | None:
        """Why ``arguments`` do not match the tool's input schema, or None."""
        return input_problem(self.input_schema, arguments)


@dataclass(frozen=True)
class CallContext:
    """What a server-side call carries besides its input."""

    call_id: str
    session_uuid: str
    run_uuid: str
    user_id: str
    webhook_secret: str = ""
    access_token: str | None = None  # the end user's OAuth token, for a tool with a connection


class Tool(Protocol):
    kind: str
    runs_on_server: bool  # False: the client executes it and posts the result
    required_fields: tuple[str, ...]  # of ``spec_fields``: a definition of this kind must set them

    def spec_fields(self) -> dict[str, serializers.Field]:
        """The definition's fields of this kind beyond the common ones (new instances)."""
        ...

    def offers(self, spec: ToolSpec) -> list[OfferedTool]: ...

    def call(self, offered: OfferedTool, arguments: dict[str, Any], context: CallContext) -> Any: ...


def offer_itself(spec: ToolSpec) -> list[OfferedTool]:
    """What a tool that is one function offers: itself, as defined."""
    return [OfferedTool(name=spec.name, description=spec.description, input_schema=spec.input_schema, spec=spec)]


def get_tool(kind: str) -> Tool:
    try:
        return import_string(TOOL_KINDS[kind])()
    except KeyError as exc:
        raise ToolError(f"No tool kind named {kind!r}.") from exc


def offered_tools(definitions: list[dict[str, Any]]) -> list[OfferedTool]:
    """Everything an agent's tool definitions offer the model. A definition whose tools
    cannot be listed now (an MCP server that is down) offers nothing this time."""
    offered: list[OfferedTool] = []
    for data in definitions:
        spec = ToolSpec.from_dict(data)
        try:
            offered += get_tool(spec.kind).offers(spec)
        except ToolError:
            continue
        except Exception:  # a bug in a tool kind: this definition offers nothing, the turn goes on
            logger.exception("Tool definition %s could not be offered", spec.name)
            continue
    return offered


def check_input_schema(schema: Any) -> str | None:
    """Why ``schema`` is not a usable JSON Schema for a tool's input, or None: the rules
    of ``runs.tools.schema`` (references within the schema, patterns RE2 can run)."""
    return schema_problem(schema)
