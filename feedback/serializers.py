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
