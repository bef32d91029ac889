"""Compaction: a session's earlier turns summarised by its own model, so later prompts
carry the agent's instructions, the summary and the last messages only.

``POST sessions/{s}/compact`` queues a compaction run (``Run.kind``), which a worker
executes like any turn (``runs.loop.execute_compaction``: the summary streamed to the
session's event log and relayed to the caller); a turn whose prompt would pass
GENIE_AUTO_COMPACT_AT of the window compacts first, in its worker
(``compact_before_turn``), and reports it in its stream as ``data-compaction``. Either
way the summary is stored as a ``Compaction`` and the transcript keeps every message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from chat.models import Compaction, Message, Session
from runs import vocabulary as ev
from runs.context import PromptParts, count_usage, prompt_parts
from runs.models import Run
from runs.providers import Chunk, Provider, ProviderRequest, get_provider

DEFAULT_KEEP_LAST = 4
SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation below for your own later use: the user's goals, facts and "
    "decisions, names and numbers, open questions. Write plain prose, at most 300 words. "
    "Reply with the summary only."
)


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
    *, plan: CompactionPlan, summary: str, automatic: bool = False, run: Run | None = None
) -> Compaction:
    """Store the summary (``run``: the compaction run that wrote it); returns it with
    ``after_tokens`` counted on the new prompt."""
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
        run=run,
    )


def compaction_data(compaction: Compaction) -> dict[str, int]:
    return {
        "before_tokens": compaction.before_tokens,
        "after_tokens": compaction.after_tokens,
        "messages_compacted": compaction.messages_compacted,
    }


def nothing_compacted(plan: CompactionPlan) -> dict[str, int]:
    """``data-compaction``'s figures when the history is no longer than ``keep_last``."""
    return {"before_tokens": plan.before_tokens, "after_tokens": plan.before_tokens, "messages_compacted": 0}


def summary_stream(plan: CompactionPlan) -> Iterator[Chunk]:
    """The model writing the summary, as it streams (the session's agent's provider).
    Raises ``ProviderError``."""
    return get_provider(plan.session.agent.provider).stream(summary_request(plan))


def replayed_events(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """A compaction run's stream rebuilt from what it stored, for an ``Idempotency-Key``
    replay after its events were purged (GENIE_EVENT_RETENTION): the summary in one delta
    and its figures, or the run's error."""
    events: list[tuple[str, dict[str, Any]]] = [(ev.START, {})]
    stored = Compaction.objects.filter(run=run).first()
    if stored is not None:
        part = {"id": run.text_part_id}
        events += [(ev.TEXT_START, part), (ev.TEXT_DELTA, {**part, "delta": stored.summary}), (ev.TEXT_END, part)]
        events.append((ev.DATA_COMPACTION, {"data": compaction_data(stored)}))
    elif run.status == Run.Status.FAILED:
        events.append((ev.ERROR, {"errorText": run.error_message}))
    elif run.status == Run.Status.STOPPED:
        events.append((ev.ABORT, {}))
    return [*events, (ev.FINISH, {})]


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
