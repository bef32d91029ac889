"""The seed001 protocol's request and response shapes (its views: ``protocols.seed001.views``)."""

from __future__ import annotations

from rest_framework import serializers

from chat.models import Message
from chat.serializers import MessageErrorSerializer, MessageTextField, UploadSerializer, validate_message_text
from genie.serializers import JSONObjectField, StrictSerializer
from runs.serializers import (
    AuthLinkSerializer,
    EventQuerySerializer,
)


class ConversationCreateSerializer(StrictSerializer):
    title = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    metadata = JSONObjectField(required=False, default=dict)


class ConversationSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField(source="uuid")
    genie_handle = serializers.CharField(source="agent.handle")
    title = serializers.CharField()
    user_id = serializers.CharField()
    metadata = serializers.JSONField()
    created_at = serializers.DateTimeField()
    client_secret = serializers.CharField(
        required=False, help_text="Publishable keys only, shown once: send it as X-Session-Secret."
    )


class SendMessageSerializer(StrictSerializer):
    text = MessageTextField()
    stream = serializers.BooleanField(
        required=False, default=False, help_text="`true`: the answer is the turn's SSE stream."
    )
    file_id = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text="A file from `…/upload` to attach."
    )
    metadata = JSONObjectField(required=False, default=dict)

    def validate_text(self, value: str) -> str:
        return validate_message_text(value)


class GenieRunStartedSerializer(serializers.Serializer):
    conversation_id = serializers.UUIDField()
    genie_handle = serializers.CharField()
    genie_run_id = serializers.UUIDField()
    message_id = serializers.UUIDField(help_text="The genie's reply, pending until the run ends.")
    status = serializers.CharField()
    stream_url = serializers.URLField(help_text="`GET …/genie-runs/{genie_run_id}`: the run's stream.")


class ConversationMessageSerializer(serializers.ModelSerializer):
    message_id = serializers.UUIDField(source="uuid")
    conversation_id = serializers.UUIDField(source="session.uuid")
    role = serializers.CharField(source="sender_role", help_text="`user` or `agent` (the genie).")
    genie_run_id = serializers.SerializerMethodField()
    file_ids = serializers.SerializerMethodField()
    error = MessageErrorSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "message_id",
            "conversation_id",
            "role",
            "text",
            "status",
            "error",
            "genie_run_id",
            "file_ids",
            "created_at",
        ]
        read_only_fields = fields

    def get_genie_run_id(self, obj: Message) -> str | None:
        run = getattr(obj, "run", None) if obj.is_agent else None
        return str(run.uuid) if run is not None else None

    def get_file_ids(self, obj: Message) -> list[str]:
        return [str(upload.file_id) for upload in obj.attachments.all()]


class ConversationUploadSerializer(UploadSerializer):
    conversation_id = serializers.UUIDField(source="session.uuid", read_only=True)

    class Meta(UploadSerializer.Meta):
        fields = ["file_id", "conversation_id", *UploadSerializer.Meta.fields[1:]]
        read_only_fields = fields


class ConversationEventQuerySerializer(EventQuerySerializer):
    conversation_id = serializers.UUIDField()


class ConversationEventSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The event's id in its conversation (the stream's SSE id, for `since_id`).")
    event = serializers.CharField(help_text="The stream's event name: `agent.message`, `processing.finished`…")
    genie_run_id = serializers.UUIDField()
    data = serializers.JSONField()
    created_at = serializers.DateTimeField()


class RuntimeConnectionSerializer(serializers.Serializer):
    runtime_connection_attempt_id = serializers.UUIDField()
    status = serializers.CharField(help_text="`auth_required` (present `auth_link.url`), `authorized` or `rejected`.")
    auth_link = AuthLinkSerializer(required=False)
    genie_handle = serializers.CharField()
