from __future__ import annotations

from typing import Any

from rest_framework import serializers

from feedback.models import Feedback
from genie.links import absolute_url
from genie.serializers import StrictSerializer


class FeedbackInputSerializer(StrictSerializer):
    rating = serializers.ChoiceField(choices=Feedback.Rating.choices)
    body = serializers.CharField(required=False, allow_blank=True, max_length=10_000, default="")


class FeedbackSerializer(serializers.ModelSerializer):
    """The seed's feedback shape."""

    url = serializers.SerializerMethodField()
    session_uuid = serializers.UUIDField(source="message.session.uuid", read_only=True)
    message_uuid = serializers.UUIDField(source="message.uuid", read_only=True)

    class Meta:
        model = Feedback
        fields = ["url", "session_uuid", "message_uuid", "rating", "body", "created_at", "updated_at"]

    def get_url(self, obj: Feedback) -> str:
        kwargs: dict[str, Any] = {"session_uuid": obj.message.session.uuid, "message_uuid": obj.message.uuid}
        return absolute_url(self.context["request"], "feedback:message-feedback", **kwargs)


class FeedbackListItemSerializer(FeedbackSerializer):
    """One rating in ``GET feedback``: the feedback shape, plus the agent's handle and the
    model that wrote the reply. Read it from ``for_list()``."""

    agent = serializers.CharField(source="message.session.agent.handle", read_only=True)
    model = serializers.CharField(source="message.model_id", read_only=True)

    class Meta(FeedbackSerializer.Meta):
        fields = [*FeedbackSerializer.Meta.fields, "agent", "model"]


# The export's columns, in order (CSV header and JSON keys alike).
EXPORT_COLUMNS = [
    "uuid",
    "created_at",
    "rating",
    "body",
    "session_uuid",
    "message_uuid",
    "agent",
    "model",
    "message_text",
    "prompt",
]


class FeedbackExportSerializer(serializers.ModelSerializer):
    """One row of the feedback export: the rating, the rated reply, the prompt it answered,
    and who wrote it (the agent's handle, the model). Read it from ``for_export()``."""

    session_uuid = serializers.UUIDField(source="message.session.uuid")
    message_uuid = serializers.UUIDField(source="message.uuid")
    agent = serializers.CharField(source="message.session.agent.handle")
    model = serializers.CharField(source="message.model_id")
    message_text = serializers.CharField(source="message.text")
    prompt = serializers.SerializerMethodField()

    class Meta:
        model = Feedback
        fields = EXPORT_COLUMNS
        read_only_fields = EXPORT_COLUMNS

    def get_prompt(self, obj: Feedback) -> str:
        """The user message the rated reply answered."""
        run = getattr(obj.message, "run", None)
        return run.user_message.text if run is not None else ""
