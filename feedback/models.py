"""Ratings of agent messages."""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Count
from django.db.models.functions import TruncDate

from chat.models import Session

if TYPE_CHECKING:
    from genie.auth import Caller


class FeedbackQuerySet(models.QuerySet["Feedback"]):
    def reachable_by(self, caller: Caller) -> FeedbackQuerySet:
        """The ratings of the sessions ``caller`` reaches (the one access rule): a secret key's
        team's, a user's own sessions'."""
        return self.filter(message__session__in=Session.objects.reachable_by(caller))

    def for_list(self) -> FeedbackQuerySet:
        """Newest first, each with its message, session and agent: one query per page."""
        return self.select_related("message__session__agent").order_by("-created_at", "-id")

    def for_review(self) -> FeedbackQuerySet:
        return self.select_related("message__session__agent", "message__session__team")

    def for_export(self) -> FeedbackQuerySet:
        """Oldest first, each with its message, the session's agent and the prompt it answered
        (the run's user message): one query."""
        return self.select_related("message__session__agent", "message__run__user_message").order_by("created_at", "id")

    def daily_counts(self, *, since: date) -> list[dict[str, Any]]:
        """Ratings from ``since`` (a day in the current time zone) on, counted per agent, day
        and rating: ``{"agent_id", "agent_name", "day", "rating", "count"}`` rows. One query."""
        return list(
            self.annotate(day=TruncDate("created_at"))
            .filter(day__gte=since)
            .values(
                "day",
                "rating",
                agent_id=models.F("message__session__agent_id"),
                agent_name=models.F("message__session__agent__name"),
            )
            .annotate(count=Count("id"))
            .order_by("agent_name", "agent_id", "day")
        )


class Feedback(models.Model):
    class Rating(models.TextChoices):
        POSITIVE = "positive", "Positive"
        NEGATIVE = "negative", "Negative"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    message = models.OneToOneField("chat.Message", on_delete=models.CASCADE, related_name="feedback")
    rating = models.CharField(max_length=10, choices=Rating.choices)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FeedbackQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "feedback"
        indexes = [models.Index(fields=["rating", "created_at"])]

    def __str__(self) -> str:
        return f"{self.rating} on {self.message_id}"
