"""Session titles written by the model after the first reply."""

from __future__ import annotations

import logging

from django.conf import settings

from chat.models import Message, Session
from genie.connections import release_connection
from runs.providers import ProviderError, ProviderRequest, get_provider

logger = logging.getLogger(__name__)

MAX_TITLE_CHARS = 60
TITLE_PROMPT = (
    "Write a short title (at most six words) for a conversation that starts with the message below. "
    "Answer with the title only, no quotes.\n\nMessage: {text}"
)


def clean_title(raw: str) -> str:
    line = next((part.strip() for part in raw.splitlines() if part.strip()), "")
    line = line.removeprefix("Title:").strip().strip("\"'*#` ").rstrip(".")
    return line[:MAX_TITLE_CHARS].strip()


def fallback_title(text: str) -> str:
    words = text.split()
    title = " ".join(words[:6])
    return title[:MAX_TITLE_CHARS] or "New chat"


def generate_title(*, session_id: int) -> str | None:
    """Give a blank-titled session a title; a title the user set is never overwritten."""
    session = Session.objects.select_related("agent").filter(pk=session_id, title="").first()
    if session is None:
        return None
    first = session.messages.filter(sender_role=Message.SenderRole.USER).order_by("created_at", "id").first()
    if first is None:
        return None
    agent = session.agent
    request = ProviderRequest(
        model=agent.model,
        messages=[{"role": "user", "content": TITLE_PROMPT.format(text=first.text[:2000])}],
        temperature=0.2,
        max_tokens=24,
        base_url=agent.base_url,
        api_key=agent.api_key,
        timeout=settings.GENIE_PROVIDER_TIMEOUT,
    )
    # No connection held while the model answers: a burst of new chats has as many titles
    # in flight as turns, and the pool is sized for the turns' few queries.
    release_connection()
    try:
        title = clean_title("".join(chunk.text for chunk in get_provider(agent.provider).stream(request)))
    except ProviderError as exc:
        logger.info("Title generation failed for session %s: %s", session.uuid, exc)
        title = ""
    title = title or fallback_title(first.text)
    # Conditional update: a title the user set meanwhile wins.
    updated = Session.objects.filter(pk=session_id, title="").update(title=title, title_generated=True)
    return title if updated else None
