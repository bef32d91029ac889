"""Any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import openai
from django.conf import settings

from runs.providers import Chunk, ProviderError, ProviderRequest


@lru_cache(maxsize=32)
def _client(base_url: str, api_key: str, timeout: float) -> openai.OpenAI:
    # One client (and connection pool) per endpoint per process; retries are ours.
    return openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=0)


def _error(exc: Exception) -> ProviderError:
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
    name = "openai"

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]:
        client = _client(
            request.base_url or settings.GENIE_OPENAI_BASE_URL,
            request.api_key or settings.GENIE_OPENAI_API_KEY,
            request.timeout,
        )
        try:
            response = client.chat.completions.create(
                model=request.model,
                messages=request.messages,
                temperature=request.temperature,
                max_tokens=request.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            finished = False
            with response:
                for event in response:
                    usage = getattr(event, "usage", None)
                    choice = event.choices[0] if event.choices else None
                    text = (choice.delta.content or "") if choice and choice.delta else ""
                    finish = choice.finish_reason if choice else None
                    finished = finished or bool(finish)
                    if text or usage or finish:
                        yield Chunk(
                            text=text,
                            prompt_tokens=usage.prompt_tokens if usage else None,
                            completion_tokens=usage.completion_tokens if usage else None,
                            finish_reason=finish,
                        )
            if not finished:  # the connection ended without a finish_reason: a cut stream
                raise ProviderError("provider_bad_response", "The model provider's stream ended early.")
        except ProviderError:
            raise
        except openai.OpenAIError as exc:
            raise _error(exc) from exc
        except (ValueError, KeyError, AttributeError, TypeError, IndexError) as exc:
            raise _error(exc) from exc
