"""Writes for ratings."""

from __future__ import annotations

from django.db import transaction

from chat.models import Message
from feedback.exceptions import NotAnAgentMessage
from feedback.models import Feedback


@transaction.atomic
def rate_message(*, message: Message, rating: str, body: str = "") -> tuple[Feedback, bool]:
    """Create or replace the message's rating; returns it and whether it is new."""
    if not message.is_agent:
        raise NotAnAgentMessage()
    feedback, created = Feedback.objects.update_or_create(message=message, defaults={"rating": rating, "body": body})
    return feedback, created


@transaction.atomic
def remove_feedback(*, message: Message) -> bool:
    deleted, _ = Feedback.objects.filter(message=message).delete()
    return bool(deleted)
