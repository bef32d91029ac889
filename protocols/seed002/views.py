"""Seed 002, the "Chat API", at ``/chat`` as its document writes it: a chat is a session, a
message's answer is the assistant's reply, synchronously.

A thin layer: sessions are opened, posted to and deleted by ``chat.services``, reached by
the one access rule (``Session.objects.reachable_by``), and the reply is awaited as the
canonical ``stream: false`` awaits it (``runs.handoff.answer_turn``). Field names are the
document's (camelCase); ids are Genie's uuids; ``agentId`` names an agent by handle (its
uuid is accepted too) and is answered with the handle.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from chat import services
from chat.models import Session
from chat.views import REDIS_UNAVAILABLE, TEXT_TOO_LONG, session_opened
from genie.auth import Caller, NotPublishable
from genie.idempotency import IdempotentRequest
from genie.schema import IDEMPOTENCY_ERRORS, IDEMPOTENCY_KEY, error_response, register_error_voice
from protocols.base import ProtocolView, find_session, pick_agent
from protocols.seed002.serializers import (
    ChatCreatedSerializer,
    ChatCreateSerializer,
    ChatDetailSerializer,
    ChatListItemSerializer,
    ChatListSerializer,
    ChatMessageCreateSerializer,
    ChatMessageListSerializer,
    ChatMessageSerializer,
    ChatSerializer,
    ReplySerializer,
)
from runs.handoff import answer_turn, reply_of
from runs.services import Turn

TAG = "seed 002"


def seed002_error(code: str, message: str, details: Any, status_code: int) -> dict[str, Any]:
    """Seed 002's error body: flat, like its other answers (``details`` names bad fields)."""
    return {"statusCode": status_code, "code": code, "message": message, "details": details}


register_error_voice(
    tag=TAG,
    component="Seed002Error",
    schema={
        "type": "object",
        "description": "Every error of the Chat API (/chat): the HTTP status, a stable code, a message, "
        "and details or null (for validation_error, the fields and their errors).",
        "properties": {
            "statusCode": {"type": "integer"},
            "code": {"type": "string", "example": "validation_error"},
            "message": {"type": "string"},
            "details": {},
        },
        "required": ["statusCode", "code", "message", "details"],
    },
)


class ChatFilter(django_filters.FilterSet):
    userId = django_filters.CharFilter(field_name="user_id", help_text="Only this end user's chats.")  # noqa: N815
    agentType = django_filters.CharFilter(  # noqa: N815
        field_name="agent__type", help_text="Only chats with agents of this `type` (exact)."
    )

    class Meta:
        model = Session
        fields = ["userId", "agentType"]


# --- views -------------------------------------------------------------------------------


class ChatScoped(ProtocolView):
    """The chat named in the path, by the one access rule; 404 in the document's voice."""

    error_voice = staticmethod(seed002_error)
    pagination_class = None  # the document's lists are whole: {chats: [...]}, {messages: [...]}

    def get_queryset(self) -> QuerySet[Session]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Session.objects.none()
        return Session.objects.reachable_by(self.request.auth).select_related("agent", "team")

    def get_chat(self) -> Session:
        return find_session(
            self.request.auth, self.kwargs["chat_id"], sessions=self.get_queryset(), missing=NotFound("No such chat.")
        )


@extend_schema(tags=[TAG])
class ChatViewSet(ChatScoped, viewsets.GenericViewSet):
    """``/chat``: the team's chats (sessions)."""

    filterset_class = ChatFilter
    serializer_class = ChatSerializer

    @extend_schema(
        request=ChatCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        examples=[
            OpenApiExample("Create a chat", {"agentId": "support", "userId": "u_42", "metadata": {}}, request_only=True)
        ],
        responses={200: ChatCreatedSerializer, **IDEMPOTENCY_ERRORS},
    )
    def create(self, request: Request) -> Response:
        """Create a chat with no message yet."""
        data = ChatCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        caller: Caller = request.auth
        missing = ValidationError({"agentId": ["No such agent."]}, code="unknown_agent")
        agent = pick_agent(caller, data.validated_data["agentId"], missing=missing)
        opened = services.open_session_once(
            caller=caller,
            agent=agent,
            idempotency=IdempotentRequest.of(request),
            metadata=data.validated_data["metadata"],
            user_id=data.validated_data["userId"],
        )
        return session_opened(
            opened, lambda session: ChatSerializer(session).data, shown_as="clientSecret", status_code=200
        )

    @extend_schema(responses=ChatListSerializer)
    def list(self, request: Request) -> Response:
        """The team's chats (a user's own), newest first; a publishable key may not list."""
        if not NotPublishable().has_permission(request, self):
            self.permission_denied(request, NotPublishable.message, NotPublishable.code)
        chats = self.filter_queryset(self.get_queryset())
        return Response({"chats": ChatListItemSerializer(chats, many=True).data})

    @extend_schema(responses=ChatDetailSerializer)
    def retrieve(self, request: Request, chat_id: str) -> Response:
        """One chat with its messages, oldest first."""
        return Response(ChatDetailSerializer(self.get_chat()).data)

    @extend_schema(responses={204: OpenApiResponse(description="Deleted, with its messages.")})
    def destroy(self, request: Request, chat_id: str) -> Response:
        """Delete a chat (its running reply is stopped first)."""
        services.delete_session(session=self.get_chat())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=[TAG])
@extend_schema_view(list=extend_schema(responses=ChatMessageListSerializer))
class ChatMessageViewSet(ChatScoped, viewsets.GenericViewSet):
    """``/chat/{chatId}/message``: a chat's messages; a new one answers with the reply."""

    serializer_class = ChatMessageSerializer

    def list(self, request: Request, chat_id: str) -> Response:
        """The chat's messages, oldest first."""
        messages = self.get_chat().messages.transcript()
        return Response({"messages": ChatMessageSerializer(messages, many=True).data})

    @extend_schema(
        request=ChatMessageCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        examples=[
            OpenApiExample("Ask", {"content": "What are your opening hours?", "role": "user"}, request_only=True)
        ],
        responses={
            200: ReplySerializer,
            409: error_response(
                "`run_active`: the chat's previous reply is still being written; "
                "`requires_action`: the reply waits for an approval or a client tool (details: pending_actions)."
            ),
            413: TEXT_TOO_LONG,
            **IDEMPOTENCY_ERRORS,
            503: REDIS_UNAVAILABLE,
            504: error_response("`run_timeout`: no reply within GENIE_SYNC_TIMEOUT; it goes on and is stored."),
        },
    )
    def create(self, request: Request, chat_id: str) -> Response:
        """Send a user message; the answer is the assistant's reply, once it is written."""
        chat = self.get_chat()
        data = ChatMessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=chat,
            text=data.validated_data["content"],
        )
        return answer_turn(request, start, wait=True, render=reply_rendered)


def reply_rendered(request: Request, turn: Turn) -> Response:
    return Response(ReplySerializer(reply_of(request, turn.run)).data)
