"""Model providers behind one small interface and a name → class registry.

A provider turns a prompt into a stream of ``Chunk``s. It never touches the ORM and
raises only ``ProviderError`` (with a stable ``code`` and a ``transient`` flag).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ProviderRequest:
    model: str
    messages: list[dict[str, str]]
    temperature: float
    max_tokens: int
    base_url: str = ""
    api_key: str = ""
    timeout: float = 60.0


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed reply: text, or (on the last chunk) usage, or nothing at all
    (the provider is alive but quiet: the caller gets a chance to stop)."""

    text: str = ""
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

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]: ...


def get_provider(name: str) -> Provider:
    from runs.providers.local import LocalProvider
    from runs.providers.openai import OpenAIProvider

    registry: dict[str, type] = {"openai": OpenAIProvider, "local": LocalProvider}
    try:
        return registry[name]()
    except KeyError as exc:
        raise ProviderError("unknown_provider", f"No provider named {name!r}.") from exc
