"""Translate sessions and messages to and from the API's shapes (seed 000)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chat.models import Agent, Message, Session
from genie.exceptions import PayloadTooLarge
from genie.links import absolute_url
from genie.serializers import JSONObjectField, StrictSerializer
from runs.services import ON_ACTIVE_RUN_CHOICES


def validate_message_text(value: str) -> str:
    if len(value) > settings.GENIE_MAX_MESSAGE_CHARS:
        raise PayloadTooLarge(
            f"The text is {len(value)} characters; the limit is {settings.GENIE_MAX_MESSAGE_CHARS}.",
            details={"limit": settings.GENIE_MAX_MESSAGE_CHARS, "length": len(value)},
        )
    if not value.strip():
        raise serializers.ValidationError("The text is blank.", code="blank")
    return value


@extend_schema_field(
    {
        "type": "string",
        "minLength": 1,
        "pattern": r"\S",
        "description": "Not blank; at most GENIE_MAX_MESSAGE_CHARS characters (413 beyond).",
    }
)
class MessageTextField(serializers.CharField):
    """A turn's text, kept as sent; blank is refused here or by ``validate_message_text``
    (all whitespace), with the same error, and too long there (413)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, error_messages={"blank": "The text is blank."}, **kwargs)


class SessionCreateSerializer(StrictSerializer):
    text = MessageTextField()
    title = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    agent = serializers.CharField(required=False, max_length=100)
    metadata = JSONObjectField(required=False, default=dict)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    ui_context = JSONObjectField(required=False, allow_null=True, default=None)

    def validate_text(self, value: str) -> str:
        return validate_message_text(value)


class MessageCreateSerializer(StrictSerializer):
    text = MessageTextField()
    metadata = JSONObjectField(required=False, default=dict)
    ui_context = JSONObjectField(required=False, allow_null=True, default=None)
    stream = serializers.BooleanField(required=False, default=True)
    on_active_run = serializers.ChoiceField(choices=ON_ACTIVE_RUN_CHOICES, required=False, default="reject")

    def validate_text(self, value: str) -> str:
        return validate_message_text(value)


class SessionUpdateSerializer(StrictSerializer):
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)
    metadata = JSONObjectField(required=False)


class SessionUserSerializer(serializers.Serializer):
    """A session's user: its owner (a member, by uuid) or the caller's end user (``user_id``, no uuid)."""

    uuid = serializers.UUIDField(allow_null=True)
    name = serializers.CharField()


class SessionSerializer(serializers.ModelSerializer):
    """The seed's session detail."""

    url = serializers.SerializerMethodField()
    user = serializers.SerializerMethodField()
    agent = serializers.SlugRelatedField(slug_field="handle", read_only=True)
    messages_url = serializers.SerializerMethodField()
    stream_url = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = [
            "uuid",
            "url",
            "title",
            "user",
            "user_id",
            "agent",
            "messages_url",
            "stream_url",
            "metadata",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields  # output only: SessionUpdateSerializer takes the input

    def get_url(self, obj: Session) -> str:
        return absolute_url(self.context["request"], "chat:session-detail", session_uuid=obj.uuid)

    def get_messages_url(self, obj: Session) -> str:
        return absolute_url(self.context["request"], "chat:message-list", session_uuid=obj.uuid)

    def get_stream_url(self, obj: Session) -> str:
        return absolute_url(self.context["request"], "runs:session-stream", session_uuid=obj.uuid)

    @extend_schema_field(SessionUserSerializer(allow_null=True))
    def get_user(self, obj: Session) -> dict[str, Any] | None:
        if obj.owner is not None:
            member = getattr(obj.owner, "member", None)
            return {
                "uuid": str(member.uuid) if member else None,
                "name": obj.owner.get_full_name() or obj.owner.get_username(),
            }
        if obj.user_id:
            return {"uuid": None, "name": obj.user_id}
        return None


class FeedbackInlineSerializer(serializers.Serializer):
    rating = serializers.CharField()
    body = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class MessageModelSerializer(serializers.Serializer):
    provider = serializers.CharField()
    model_id = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    session_uuid = serializers.UUIDField(source="session.uuid", read_only=True)
    feedback_url = serializers.SerializerMethodField()
    feedback = serializers.SerializerMethodField()
    model = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "uuid",
            "url",
            "session_uuid",
            "feedback_url",
            "feedback",
            "sender_role",
            "text",
            "status",
            "temperature",
            "model",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields  # output only

    def _url_kwargs(self, obj: Message) -> dict[str, Any]:
        return {"session_uuid": obj.session.uuid, "message_uuid": obj.uuid}

    def get_url(self, obj: Message) -> str:
        return absolute_url(self.context["request"], "chat:message-detail", **self._url_kwargs(obj))

    def get_feedback_url(self, obj: Message) -> str | None:
        if not obj.is_agent:
            return None
        return absolute_url(self.context["request"], "feedback:message-feedback", **self._url_kwargs(obj))

    @extend_schema_field(FeedbackInlineSerializer(allow_null=True))
    def get_feedback(self, obj: Message) -> dict[str, Any] | None:
        feedback = getattr(obj, "feedback", None)
        return FeedbackInlineSerializer(feedback).data if feedback is not None else None

    @extend_schema_field(MessageModelSerializer())
    def get_model(self, obj: Message) -> dict[str, str]:
        return {"provider": obj.provider, "model_id": obj.model_id}


class SessionWithMessagesSerializer(SessionSerializer):
    """The session detail; with ``?include=messages``, its transcript too."""

    # Not required: the schema of ``GET sessions/{s}`` covers the detail with and without it.
    messages = MessageSerializer(
        source="messages.transcript", many=True, required=False, help_text="Only with ?include=messages."
    )

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "messages"]


class SessionStartedSerializer(serializers.Serializer):
    """``POST sessions``: the new session, its first run, and where to follow them."""

    uuid = serializers.UUIDField(help_text="The session's uuid.")
    stream_url = serializers.URLField()
    messages_url = serializers.URLField()
    run_uuid = serializers.UUIDField()
    run_url = serializers.URLField()
    client_secret = serializers.CharField(
        required=False,
        help_text="Publishable keys only, shown once: send it as X-Session-Secret to act on this session.",
    )


class TurnStartedSerializer(serializers.Serializer):
    """``POST sessions/{s}/messages``: the new turn's agent message, its run, and where to follow them."""

    uuid = serializers.UUIDField(help_text="The agent message's uuid; the message is pending until the run ends.")
    stream_url = serializers.URLField()
    run_uuid = serializers.UUIDField()
    run_url = serializers.URLField()


class AgentSerializer(serializers.ModelSerializer):
    """Agents of the team. ``api_key`` is write-only: it is never returned."""

    url = serializers.SerializerMethodField()
    handle = serializers.SlugField(max_length=100)
    api_key = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500)
    has_api_key = serializers.SerializerMethodField()
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=100_000, required=False, allow_null=True)

    class Meta:
        model = Agent
        fields = [
            "uuid",
            "url",
            "handle",
            "name",
            "instructions",
            "provider",
            "model",
            "base_url",
            "api_key",
            "has_api_key",
            "temperature",
            "max_tokens",
            "is_public",
            "is_default",
            "archived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["uuid", "is_default", "archived_at", "created_at", "updated_at"]

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, f in self.fields.items() if not f.read_only})
            if unknown:
                raise serializers.ValidationError({name: ["Unknown or read-only field."] for name in unknown})
        return super().to_internal_value(data)

    def get_url(self, obj: Agent) -> str:
        return absolute_url(self.context["request"], "chat:agent-detail", handle=obj.handle)

    def get_has_api_key(self, obj: Agent) -> bool:
        return bool(obj.api_key)

    def validate_handle(self, value: str) -> str:
        team = self.context["team"]
        clash = Agent.objects.for_team(team).filter(handle=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError("An agent with this handle exists.", code="unique")
        return value
