"""Any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import httpx
import httpx2
import openai
from django.conf import settings

from genie.egress import EgressRefused, guarded_client
from runs.providers import Chunk, ProviderError, ProviderRequest, ToolCallDelta, ToolDefinition


@lru_cache(maxsize=32)
def _client(base_url: str, api_key: str, timeout: float, *, guarded: bool) -> openai.OpenAI:
    # One client (and connection pool) per endpoint per process; retries are ours. A
    # team's own endpoint goes through the egress guard; the operator's default is trusted.
    http_client = guarded_client(timeout=timeout, follow_redirects=True) if guarded else None
    return openai.OpenAI(
        base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0, http_client=http_client
    )


def endpoint(request: ProviderRequest) -> tuple[str, str, bool]:
    """Base URL, key, and whether the call must pass the egress guard. The server-wide key
    goes only to the server-wide base URL: an agent with its own ``base_url`` brings its
    own key or sends none (keyless endpoints such as Ollama are valid)."""
    default_url = settings.GENIE_OPENAI_BASE_URL
    if not request.base_url or request.base_url.rstrip("/") == default_url.rstrip("/"):
        return default_url, request.api_key or settings.GENIE_OPENAI_API_KEY, False
    return request.base_url, request.api_key, True


def _error(exc: Exception) -> ProviderError:
    refused = exc if isinstance(exc, EgressRefused) else exc.__cause__
    if isinstance(refused, EgressRefused):
        return ProviderError(refused.code, refused.message)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("provider_timeout", "The model provider timed out.", transient=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("provider_unreachable", "The model provider could not be reached.", transient=True)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ProviderError("provider_auth_failed", "The model provider rejected the credentials.")
    if isinstance(exc, openai.RateLimitError):
        return ProviderError("provider_rate_limited", "The model provider is rate limiting requests.", transient=True)
    if isinstance(exc, openai.NotFoundError):
        return ProviderError("provider_model_not_found", "The model provider does not know this model.")
    if isinstance(exc, openai.APIStatusError):
        transient = exc.status_code >= 500
        return ProviderError("provider_error", f"The model provider answered {exc.status_code}.", transient=transient)
    return ProviderError("provider_bad_response", "The model provider sent a malformed response.")


class OpenAIProvider:
    """Streams through the ``openai`` client's own ``post`` (base URL, auth, timeouts,
    status errors) with the request body as the API documents it, and reads the SSE
    lines itself, from the response's bytes. The typed ``chat.completions.create``
    transforms its parameters first (about 1.1 ms of worker CPU per model call, on every
    turn's way to its first token), and its stream builds a pydantic model per chunk
    (90-120 µs per token); its text and line decoders cost 60 µs more."""

    name = "openai"
    supports_tools = True
    # A call may start in one thread and be read in another (runs.early): the client is
    # shared by the worker's threads already.
    starts_early = True

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]:
        base_url, api_key, guarded = endpoint(request)
        client = _client(base_url, api_key, request.timeout, guarded=guarded)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.update(request.sampling())
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if request.tools:
            body["tools"] = [tool_spec(tool) for tool in request.tools]
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        try:
            response = client.post("/chat/completions", cast_to=httpx.Response, body=body, stream=True)
            try:
                yield from stream_chunks(response.iter_bytes())
            finally:
                response.close()
        except ProviderError:
            raise
        except (openai.OpenAIError, EgressRefused) as exc:
            raise _error(exc) from exc
        except (httpx2.TimeoutException, httpx.TimeoutException) as exc:
            raise ProviderError("provider_timeout", "The model provider timed out.", transient=True) from exc
        except (httpx2.TransportError, httpx.TransportError) as exc:  # a connection cut mid-stream
            raise ProviderError("provider_bad_response", "The model provider's stream ended early.") from exc
        except (ValueError, KeyError, AttributeError, TypeError, IndexError) as exc:
            raise _error(exc) from exc


def stream_chunks(pieces: Iterable[bytes]) -> Iterator[Chunk]:
    """The chunks of a Chat Completions SSE body that carry something (an empty ``Chunk``
    for a keep-alive comment, so the turn loop may check its stop and time limits).
    A body that ends without a ``finish_reason`` is a cut stream: ProviderError."""
    finished = False
    for line in sse_lines(pieces):
        if line.startswith(b":"):
            yield Chunk()
            continue
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            break
        chunk = parse_chunk(json.loads(payload))
        finished = finished or bool(chunk.finish_reason)
        if chunk.text or chunk.tool_calls or chunk.prompt_tokens is not None or chunk.finish_reason:
            yield chunk
    if not finished:
        raise ProviderError("provider_bad_response", "The model provider's stream ended early.")


def sse_lines(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of an SSE body as bytes, from the pieces the connection delivers (a line
    may span pieces). Split here rather than through httpx's text and line decoders, which
    cost about 60 µs of worker CPU per streamed token (a token is a read of its own)."""
    rest = b""
    for piece in pieces:
        if b"\n" not in piece:
            rest += piece
            continue
        *lines, tail = (rest + piece).split(b"\n")
        rest = tail
        for line in lines:
            yield line[:-1] if line.endswith(b"\r") else line
    if rest:
        yield rest


def tool_spec(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.input_schema},
    }


def parse_chunk(event: dict[str, Any]) -> Chunk:
    """One ``chat.completion.chunk`` as a ``Chunk``; an ``error`` object fails the stream."""
    if "error" in event:
        raise ProviderError("provider_error", "The model provider reported an error mid-stream.")
    usage = event.get("usage") or {}
    choices = event.get("choices") or []
    choice = choices[0] if choices else {}
    delta = choice.get("delta") or {}
    return Chunk(
        text=delta.get("content") or "",
        tool_calls=tuple(
            ToolCallDelta(
                index=int(call.get("index", 0)),
                id=call.get("id") or "",
                name=(call.get("function") or {}).get("name") or "",
                arguments=(call.get("function") or {}).get("arguments") or "",
            )
            for call in delta.get("tool_calls") or ()
        ),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason"),
    )
