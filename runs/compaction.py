"""Compaction: a session's earlier turns summarised by its own model, so later prompts
carry the agent's instructions, the summary and the last messages only.

``POST sessions/{s}/compact`` streams the summary to its caller (``compact_stream``);
a turn whose prompt would pass GENIE_AUTO_COMPACT_AT of the window compacts first, in
its worker (``compact_before_turn``), and reports it in its stream as
``data-compaction``. Either way the summary is stored as a ``Compaction`` and the
transcript keeps every message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from chat.models import Compaction, Message, Session
from runs import vocabulary as ev
from runs.context import PromptParts, count_usage, prompt_parts
from runs.events import StreamEvent
from runs.formats.base import StreamFormat
from runs.providers import Provider, ProviderError, ProviderRequest, get_provider

DEFAULT_KEEP_LAST = 4
SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation below for your own later use: the user's goals, facts and "
    "decisions, names and numbers, open questions. Write plain prose, at most 300 words. "
    "Reply with the summary only."
)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "x-vercel-ai-ui-message-stream": "v1"}


@dataclass
class CompactionPlan:
    """The messages to summarise and what stays verbatim, with the usage before."""

    session: Session
    parts: PromptParts
    to_compact: list[Message]
    before_tokens: int

    @property
    def possible(self) -> bool:
        return bool(self.to_compact)


def plan_compaction(*, session: Session, keep_last: int, parts: PromptParts | None = None) -> CompactionPlan:
    """Everything in the prompt's history (``parts``, else the session's next prompt) but
    its last ``keep_last`` messages."""
    if parts is None:
        last_user = session.messages.filter(sender_role=Message.SenderRole.USER).order_by("-created_at").first()
        parts = prompt_parts(session=session, user_message=last_user)
    to_compact = parts.history[: max(len(parts.history) - keep_last, 0)]
    before = count_usage(parts, messages_total=0)["used_tokens"]
    return CompactionPlan(session=session, parts=parts, to_compact=to_compact, before_tokens=before)


def summary_request(plan: CompactionPlan) -> ProviderRequest:
    """The model call that writes the summary: the earlier summary and the transcript to fold in."""
    agent = plan.session.agent
    lines = [f"Earlier summary: {plan.parts.summary}"] if plan.parts.summary else []
    for message in plan.to_compact:
        who = "User" if message.sender_role == Message.SenderRole.USER else "Assistant"
        lines.append(f"{who}: {message.text}")
    return ProviderRequest(
        model=agent.model,
        messages=[
            {"role": "system", "content": SUMMARY_INSTRUCTIONS},
            {"role": "user", "content": "\n\n".join(lines)},
        ],
        temperature=0.2,
        max_tokens=agent.max_tokens or settings.GENIE_MAX_TOKENS,
        base_url=agent.base_url,
        api_key=agent.api_key,
        timeout=settings.GENIE_PROVIDER_TIMEOUT,
    )


def write_summary(plan: CompactionPlan, provider: Provider) -> str:
    """Ask the model for the summary; the whole of it. Raises ``ProviderError``."""
    pieces = [chunk.text for chunk in provider.stream(summary_request(plan)) if chunk.text]
    return "".join(pieces).strip()


@transaction.atomic
def store_compaction(
    *, plan: CompactionPlan, summary: str, automatic: bool = False, idempotency_key: str = ""
) -> Compaction:
    """Store the summary; returns it with ``after_tokens`` counted on the new prompt."""
    after_parts = PromptParts(
        agent=plan.parts.agent,
        system=plan.parts.system,
        history=plan.parts.history[len(plan.to_compact) :],
        summary=summary,
    )
    return Compaction.objects.create(
        session=plan.session,
        upto_message=plan.to_compact[-1],
        summary=summary,
        messages_compacted=len(plan.to_compact),
        before_tokens=plan.before_tokens,
        after_tokens=count_usage(after_parts, messages_total=0)["used_tokens"],
        automatic=automatic,
        idempotency_key=idempotency_key,
    )


def compaction_data(compaction: Compaction) -> dict[str, int]:
    return {
        "before_tokens": compaction.before_tokens,
        "after_tokens": compaction.after_tokens,
        "messages_compacted": compaction.messages_compacted,
    }


def sse(chunk: dict[str, Any]) -> bytes:
    return ev.data_line(chunk).encode()


def chunk_writer(wire: StreamFormat | None) -> Callable[[dict[str, Any]], bytes]:
    """How a compaction's chunks go on the wire: as the AI SDK's chunks, or in a protocol's
    format (seed 003's ``token``/``done``). A compaction is no run: its events have no id."""
    if wire is None:
        return sse
    return lambda chunk: wire.frame(StreamEvent(0, "", chunk["type"], ev.to_json(chunk))).encode()


def compact_stream(
    *, session: Session, keep_last: int, idempotency_key: str = "", wire: StreamFormat | None = None
) -> Iterator[bytes]:
    """The body of ``POST sessions/{s}/compact``: ``start``, the summary as
    ``text-start``/``text-delta``/``text-end``, ``data-compaction``, ``finish`` (an
    ``error`` before the ``finish`` when the model fails; nothing is stored then), in
    ``wire``'s format when given. With nothing to compact (the history is no longer than
    ``keep_last``) the summary is empty and ``messages_compacted`` 0. Holds no lock while
    the model writes."""
    part_id = f"compaction-{session.uuid}"
    write = chunk_writer(wire)
    yield (wire or StreamFormat()).preamble()
    yield write({"type": ev.START})
    plan = plan_compaction(session=session, keep_last=keep_last)
    if not plan.possible:
        data = {"before_tokens": plan.before_tokens, "after_tokens": plan.before_tokens, "messages_compacted": 0}
        yield write({"type": ev.DATA_COMPACTION, "data": data})
        yield write({"type": ev.FINISH})
        return
    yield write({"type": ev.TEXT_START, "id": part_id})
    provider = get_provider(session.agent.provider)
    written: list[str] = []
    try:
        for chunk in provider.stream(summary_request(plan)):
            if chunk.text:
                written.append(chunk.text)
                yield write({"type": ev.TEXT_DELTA, "id": part_id, "delta": chunk.text})
    except ProviderError as exc:
        yield write({"type": ev.TEXT_END, "id": part_id})
        yield write({"type": ev.ERROR, "errorText": exc.message})
        yield write({"type": ev.FINISH})
        return
    yield write({"type": ev.TEXT_END, "id": part_id})
    summary = "".join(written).strip()
    compaction = store_compaction(plan=plan, summary=summary, idempotency_key=idempotency_key)
    yield write({"type": ev.DATA_COMPACTION, "data": compaction_data(compaction)})
    yield write({"type": ev.FINISH})


def replay_stream(compaction: Compaction, *, wire: StreamFormat | None = None) -> Iterator[bytes]:
    """A stored compaction as the stream that made it (an ``Idempotency-Key`` retry)."""
    part_id = f"compaction-{compaction.session.uuid}"
    write = chunk_writer(wire)
    yield (wire or StreamFormat()).preamble()
    yield write({"type": ev.START})
    yield write({"type": ev.TEXT_START, "id": part_id})
    yield write({"type": ev.TEXT_DELTA, "id": part_id, "delta": compaction.summary})
    yield write({"type": ev.TEXT_END, "id": part_id})
    yield write({"type": ev.DATA_COMPACTION, "data": compaction_data(compaction)})
    yield write({"type": ev.FINISH})


def compact_before_turn(*, parts: PromptParts, session: Session, provider: Provider) -> Compaction | None:
    """In the worker, before a turn's first step (``parts``: its prompt's): compact when
    the prompt would pass GENIE_AUTO_COMPACT_AT of the window and there is something to
    compact. The summary is not streamed (the turn's stream gets ``data-compaction``).
    Raises ``ProviderError``."""
    plan = plan_compaction(session=session, keep_last=DEFAULT_KEEP_LAST, parts=parts)
    window = count_usage(plan.parts, messages_total=0)["context_window"]
    if not plan.possible or plan.before_tokens <= settings.GENIE_AUTO_COMPACT_AT * window:
        return None
    return store_compaction(plan=plan, summary=write_summary(plan, provider), automatic=True)
