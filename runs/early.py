"""A fresh turn's first model call, started as soon as its prompt is read, while the
worker's claim is still being recorded (issue 29).

The claim (``runs.loop.claim_run``) locks the run and its session, decides that this
worker answers it, then records that (lease, run and message status, commit). A remote
model takes tens to hundreds of milliseconds to its first token; the bookkeeping need not
come first. So once the claim is decided, ``EarlyStart.begin`` reads the prompt (the reads
the first step would make anyway) and starts the model call in a thread, which only reads
the model's first chunk into memory. Nothing is published from that thread: every event
is still written by the turn's own thread, after the claim is committed. A duplicate
delivery never gets this far (the claim refuses it under the run's row lock before
``begin``), and a claim that fails after ``begin`` cancels the call: at worst a model call
is made and dropped, never a second answer.

Only where the first step's request is known at the claim: a run never started before, no
tools offered (their definitions are the turn's), a prompt short enough not to be
compacted first, and a provider that says its calls may start in another thread
(``starts_early``; the local model does not).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from runs.compaction import DEFAULT_KEEP_LAST
from runs.models import Run
from runs.providers import Chunk, ProviderRequest

if TYPE_CHECKING:
    from runs.context import PromptParts


class EarlyCall:
    """``provider.stream(request)`` advanced to its first chunk in a thread of its own."""

    def __init__(self, provider: Any, request: ProviderRequest) -> None:
        self.request = request
        self._chunks = provider.stream(request)
        self._first: list[Chunk] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._cancelled = False
        self._thread = threading.Thread(target=self._read_first, name="genie-early-call", daemon=True)
        self._thread.start()

    def _read_first(self) -> None:
        try:
            self._first.append(next(self._chunks))
        except StopIteration:
            pass
        except BaseException as exc:  # handed to the turn's thread, which raises it there
            self._error = exc
        with self._lock:
            if self._cancelled:
                self._chunks.close()

    def stream(self) -> Iterator[Chunk]:
        """The call's chunks, the first one included (waits for it)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        yield from self._first
        yield from self._chunks

    def cancel(self) -> None:
        """Drop the call: its connection is closed now, or when its first chunk comes."""
        with self._lock:
            self._cancelled = True
            if not self._thread.is_alive():
                self._chunks.close()


class EarlyStart:
    """What ``claim_run`` calls once it has decided the run is this worker's (``begin``),
    and what the turn then takes (``take``)."""

    def __init__(self, get_provider: Any, build_request: Any, read_prompt: Any) -> None:
        self._get_provider = get_provider
        self._build_request = build_request
        self._read_prompt = read_prompt
        self.call: EarlyCall | None = None
        self.parts: PromptParts | None = None

    def begin(self, run: Run) -> None:
        self.cancel()  # a claim made again (its connection lost) drops its first attempt's call
        self.parts = None
        if run.is_compaction or run.status != Run.Status.QUEUED or run.attempts or run.state or run.client_tools:
            return  # started before, or a continuation: its first step is not this one
        agent = run.session.agent
        provider = self._get_provider(agent.provider)
        if agent.tools or not getattr(provider, "starts_early", False):
            return
        self.parts = self._read_prompt(run)
        if len(self.parts.history) > DEFAULT_KEEP_LAST:
            return  # may be compacted first: the first call's prompt is not known yet
        self.call = EarlyCall(provider, self._build_request(run, [], (), parts=self.parts))

    def take(self, request: ProviderRequest) -> Iterator[Chunk] | None:
        """The early call's chunks when it asked the model exactly ``request`` (else it is
        dropped, and None: the turn calls the model itself). Once."""
        call, self.call = self.call, None
        if call is None:
            return None
        if call.request != request:
            call.cancel()
            return None
        return call.stream()

    def cancel(self) -> None:
        if self.call is not None:
            self.call.cancel()
            self.call = None
