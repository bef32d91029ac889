"""Model providers behind one small interface and a name → class registry.

A provider turns a prompt (and the tools the model may call) into a stream of
``Chunk``s: text, tool-call fragments, usage. It never touches the ORM and raises only
``ProviderError`` (with a stable ``code`` and a ``transient`` flag).

``PROVIDERS`` is the one list of provider names: the agent model offers its keys as
choices and ``get_provider`` runs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.utils.module_loading import import_string

# name → (label, class). Classes are imported on first use: the local provider's
# llama.cpp is heavy and only workers that run it should load it.
PROVIDERS: dict[str, tuple[str, str]] = {
    "local": ("Local model (llama.cpp)", "runs.providers.local.LocalProvider"),
    "openai": ("OpenAI-compatible endpoint", "runs.providers.openai.OpenAIProvider"),
}


def provider_choices() -> list[tuple[str, str]]:
    return [(name, label) for name, (label, _) in PROVIDERS.items()]


@dataclass(frozen=True)
class ToolDefinition:
    """A tool the model may call: its name, what it does, and a JSON Schema of its input."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True)
class ProviderRequest:
    """One model call. The sampling fields after ``tools`` are the client's (None: not
    asked, the provider's default); ``response_format`` is OpenAI's (``json_object``, or
    ``json_schema`` with ``{name, schema, strict}``), ``tool_choice`` too."""

    model: str
    messages: list[dict[str, Any]]
    temperature: float
    max_tokens: int
    base_url: str = ""
    api_key: str = ""
    timeout: float = 60.0
    tools: tuple[ToolDefinition, ...] = ()
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    response_format: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None

    def sampling(self) -> dict[str, Any]:
        """The client's sampling settings that were asked for, in OpenAI's names."""
        asked = {
            "top_p": self.top_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": self.seed,
            "stop": list(self.stop) or None,
        }
        return {name: value for name, value in asked.items() if value is not None}


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a tool call as the model streams it (OpenAI's ``delta.tool_calls``):
    ``index`` identifies the call within the reply; ``id`` and ``name`` come with its first
    fragment, the JSON of its arguments in pieces."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed reply: text, tool-call fragments, or (on the last chunk)
    usage and the finish reason, or nothing at all (the provider is alive but quiet: the
    caller gets a chance to stop)."""

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


@dataclass
class ProviderError(Exception):
    code: str
    message: str
    transient: bool = False
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Provider(Protocol):
    name: str
    supports_tools: bool  # whether the model is offered the agent's tools

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]: ...


def get_provider(name: str) -> Provider:
    try:
        _, path = PROVIDERS[name]
    except KeyError as exc:
        raise ProviderError("unknown_provider", f"No provider named {name!r}.") from exc
    return import_string(path)()


def preload_providers() -> None:
    """Import every provider's module now: a worker calls this at start, so its first turn
    does not pay for the import (the ``openai`` SDK alone takes about 0.3 s)."""
    for _, path in PROVIDERS.values():
        import_string(path)
