"""The seed002 protocol's request and response shapes (its views: ``protocols.seed002.views``)."""

from __future__ import annotations

from drf_spectacular.utils import (
    extend_schema_serializer,
)
from rest_framework import serializers

from chat.models import Message
from chat.serializers import MessageErrorSerializer, MessageTextField, validate_message_text
from genie.serializers import JSONObjectField, StrictSerializer


class ChatCreateSerializer(StrictSerializer):
    agentId = serializers.CharField(max_length=100, help_text="The agent's handle (its uuid is accepted too).")  # noqa: N815
    userId = serializers.CharField(  # noqa: N815
        required=False, allow_blank=True, max_length=200, default="", help_text="Your own id for the end user."
    )
    metadata = JSONObjectField(required=False, default=dict)


class ChatSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    agentId = serializers.CharField(source="agent.handle")  # noqa: N815
    teamId = serializers.UUIDField(source="team.uuid")  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815


class ChatCreatedSerializer(ChatSerializer):
    clientSecret = serializers.CharField(  # noqa: N815
        required=False,
        help_text="Publishable keys only, shown once: send it as X-Session-Secret to act on this chat.",
    )


class ChatListItemSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    agentId = serializers.CharField(source="agent.handle")  # noqa: N815
    userId = serializers.CharField(source="user_id")  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815


@extend_schema_serializer(many=False)  # the list is one object, {chats: [...]}, not an array
class ChatListSerializer(serializers.Serializer):
    chats = ChatListItemSerializer(many=True)


class ChatMessageSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    content = serializers.CharField(source="text")
    role = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    error = MessageErrorSerializer(read_only=True, allow_null=True, help_text="A failed or stopped reply's error.")

    def get_role(self, obj: Message) -> str:
        return "assistant" if obj.is_agent else "user"


@extend_schema_serializer(many=False)  # {messages: [...]}
class ChatMessageListSerializer(serializers.Serializer):
    messages = ChatMessageSerializer(many=True)


class ChatDetailSerializer(ChatSerializer):
    messages = ChatMessageSerializer(source="messages.transcript", many=True)


class ReplySerializer(ChatMessageSerializer):
    """The assistant's reply to a message."""

    chatId = serializers.UUIDField(source="session.uuid")  # noqa: N815


class ChatMessageCreateSerializer(StrictSerializer):
    content = MessageTextField()
    role = serializers.ChoiceField(
        choices=["user"], required=False, default="user", help_text="Only `user`: the assistant answers."
    )

    def validate_content(self, value: str) -> str:
        return validate_message_text(value)
