"""What a client asks of one turn, whatever protocol it came by: its settings for the
turn's model calls (``Run.client_settings``) and the tools it runs itself
(``Run.client_tools``).

A protocol reads the request into ``ClientSettings`` and ``ClientToolSpec``s, the turn's
service stores them on the run, and the loop applies them to every model call of the
turn: the client's instructions after the agent's own, its sampling settings instead of
the agent's, its ``max_tokens`` never above the agent's own limit, its tools beside the
agent's (a call to one makes the run wait ``requires_action`` for the client's result,
as the agent's own client tools do).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from runs.tools import OfferedTool, ToolSpec
from runs.tools.schema import output_problem


@dataclass(frozen=True)
class ClientSettings:
    instructions: tuple[str, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ClientSettings:
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in (data or {}).items() if name in known}
        for name in ("instructions", "stop"):
            if name in values:
                values[name] = tuple(values[name] or ())
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """What is stored on the run: only what was asked."""
        return {name: value for name, value in asdict(self).items() if value not in (None, ())}

    def max_tokens_within(self, limit: int) -> int:
        """The client's cap, never above the agent's own ``limit``."""
        return min(limit, self.max_tokens) if self.max_tokens else limit

    @property
    def strict_schema(self) -> dict[str, Any] | None:
        """The JSON Schema a reply must validate against (``json_schema`` with ``strict``)."""
        if not self.response_format or self.response_format.get("type") != "json_schema":
            return None
        spec = self.response_format.get("json_schema") or {}
        return spec.get("schema") or {} if spec.get("strict") else None

    def output_error(self, text: str) -> str | None:
        """Why a finished reply breaks a strict ``json_schema`` the client asked for, or
        None (no strict schema: the reply is the model's)."""
        schema = self.strict_schema
        if schema is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return "The reply is not valid JSON (response_format json_schema, strict)."
        # Never jsonschema's defaults: they fetch a remote $ref and match patterns with re.
        return output_problem(schema, value)


def with_instructions(prompt: list[dict[str, Any]], instructions: tuple[str, ...]) -> list[dict[str, Any]]:
    """``prompt`` with the client's instructions as system messages after its leading
    system messages (the agent's own instructions and context come first and stay)."""
    if not instructions:
        return prompt
    head = next((index for index, message in enumerate(prompt) if message["role"] != "system"), len(prompt))
    added = [{"role": "system", "content": text} for text in instructions]
    return [*prompt[:head], *added, *prompt[head:]]


@dataclass(frozen=True)
class ClientToolSpec:
    """A function the client offered for the turn: the model may call it; the client runs it."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientToolSpec:
        return cls(
            name=data["name"],
            description=data.get("description") or "",
            input_schema=data.get("input_schema") or {"type": "object", "properties": {}},
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def client_tool_names(client_tools: list[dict[str, Any]]) -> frozenset[str]:
    """The names of a run's client tools (``Run.client_tools``)."""
    return frozenset(tool["name"] for tool in client_tools)


def offered_client_tools(client_tools: list[dict[str, Any]]) -> list[OfferedTool]:
    """A run's client tools as the model is offered them: tools of kind ``client`` (the
    client executes them; the run waits for its result)."""
    offered = []
    for data in client_tools:
        spec = ClientToolSpec.from_dict(data)
        kind = ToolSpec(name=spec.name, kind="client", description=spec.description, input_schema=spec.input_schema)
        offered.append(
            OfferedTool(name=spec.name, description=spec.description, input_schema=spec.input_schema, spec=kind)
        )
    return offered


@dataclass(frozen=True)
class TurnOptions:
    """Everything a client asked of a new turn besides its text: ``settings``, ``tools``,
    and ``steps``: the assistant tool calls and tool results the client sends after the
    turn's user message (a tool loop it ran before this request, OpenAI's way), which
    the turn's first model call reads after the prompt; ``text``: their assistant text."""

    settings: ClientSettings = ClientSettings()
    tools: tuple[ClientToolSpec, ...] = ()
    steps: tuple[dict[str, Any], ...] = ()
    text: str = ""

    def run_fields(self) -> dict[str, Any]:
        """The new run's fields."""
        values: dict[str, Any] = {
            "client_settings": self.settings.as_dict(),
            "client_tools": [tool.as_dict() for tool in self.tools],
        }
        if self.steps:
            values["state"] = {"messages": list(self.steps), "text": self.text}
        return values
