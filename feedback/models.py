"""Ratings of agent messages."""

from __future__ import annotations

import uuid

from django.db import models


class FeedbackQuerySet(models.QuerySet["Feedback"]):
    def for_review(self) -> FeedbackQuerySet:
        return self.select_related("message__session__agent", "message__session__team")


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
