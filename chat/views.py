"""Sessions and messages: thin views, input serializer → one service → output serializer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.filters import SessionFilter
from chat.models import Agent, Message, Session, Upload
from chat.serializers import (
    AgentCreatedSerializer,
    AgentProfileSerializer,
    AgentSerializer,
    CompactSerializer,
    ContextUsageSerializer,
    MessageCreateSerializer,
    MessageEditSerializer,
    MessageSerializer,
    ReplyStartedSerializer,
    SessionCreateSerializer,
    SessionDetailSerializer,
    SessionSerializer,
    SessionStartedSerializer,
    SessionUpdateSerializer,
    SessionWithMessagesSerializer,
    TurnStartedSerializer,
    UploadSerializer,
)
from genie.auth import Caller, NotPublishable
from genie.idempotency import IdempotentRequest, run_idempotently
from genie.links import absolute_url
from genie.parsers import GenieMultiPartParser
from genie.schema import IDEMPOTENCY_ERRORS, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, error_response
from genie.views import TeamConfigViewSet
from runs import context
from runs.exceptions import RunActive
from runs.formats import UIMessageFormat
from runs.handoff import answer_compaction, answer_turn, reply_of, run_urls, turn_headers, wants_event_stream
from runs.services import Turn


def turn_urls(request: Request, session: Session) -> dict[str, str]:
    return {
        "stream_url": absolute_url(request, "runs:session-stream", session_uuid=session.uuid),
        "messages_url": absolute_url(request, "chat:message-list", session_uuid=session.uuid),
    }


# An upload's body, for the schema: one multipart field, ``file``.
def session_opened(
    opened: tuple[Session, str | None, bool],
    render: Callable[[Session], dict[str, Any]],
    *,
    shown_as: str = "client_secret",
    status_code: int = status.HTTP_201_CREATED,
) -> Response:
    """The answer to a session opened without a turn (``services.open_session_once``), the
    canonical API's and the protocols': ``render(session)``, a publishable key's new
    session's secret in ``shown_as`` (shown once: a replay has none), and
    ``Idempotent-Replayed`` on a replay."""
    session, client_secret, replayed = opened
    body = render(session)
    if client_secret:
        body[shown_as] = client_secret
    response = Response(body, status=status_code)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


UPLOAD_REQUEST = {
    "multipart/form-data": {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}},
        "required": ["file"],
    }
}
TEXT_TOO_LONG = error_response("`text_too_long`: the text is longer than GENIE_MAX_MESSAGE_CHARS; `request_too_large`.")
REDIS_UNAVAILABLE = error_response("`redis_unavailable`: nothing was created; retry shortly.")


# One event of the compaction stream as an SSE client parses it: its id in the session's
# event log (resume on ``Location`` with Last-Event-ID) and its chunk.
COMPACTION_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's id in its session."},
        "data": {"type": "string", "description": "The chunk as JSON: `start`, `text-delta`, …"},
    },
    "required": ["id", "data"],
}


class SessionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    lookup_field = "uuid"
    lookup_url_kwarg = "session_uuid"
    serializer_class = SessionSerializer
    filterset_class = SessionFilter

    def get_queryset(self) -> QuerySet[Session]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Session.objects.none()
        return Session.objects.reachable_by(self.request.auth).select_related("agent", "owner__member").with_preview()

    def list(self, request: Request) -> Response:
        if not NotPublishable().has_permission(request, self):
            self.permission_denied(request, NotPublishable.message, NotPublishable.code)
        return super().list(request)

    def get_object(self) -> Session:
        # Not GenericAPIView's: list filters (?agent=, ?search=) do not apply to one session.
        return get_object_or_404(self.get_queryset(), uuid=self.kwargs["session_uuid"])

    @extend_schema(
        request=SessionCreateSerializer,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        examples=[
            OpenApiExample(
                "Start a session", {"text": "Name five cats.", "metadata": {"source": "docs"}}, request_only=True
            ),
        ],
        responses={201: SessionStartedSerializer, 413: TEXT_TOO_LONG, **IDEMPOTENCY_ERRORS, 503: REDIS_UNAVAILABLE},
    )
    def create(self, request: Request) -> Response | HttpResponse:
        data = SessionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        caller: Caller = request.auth
        agent = Agent.objects.startable_by(caller).pick(fields.get("agent"))
        if agent is None:
            raise ValidationError({"agent": ["No such agent."]}, code="unknown_agent")
        if fields["empty"]:
            return self._create_empty(request, caller, agent, fields)
        start = lambda: services.start_turn(  # noqa: E731
            caller=caller,
            idempotency=IdempotentRequest.of(request),
            agent=agent,
            text=fields["text"],
            title=fields["title"],
            metadata=fields["metadata"],
            user_id=fields["user_id"],
            ui_context=fields["ui_context"],
            scan_context=fields["scan_context"],
            file_ids=fields["file_ids"],
        )
        wire = UIMessageFormat() if wants_event_stream(request) else None
        return answer_turn(request, start, wire=wire, headers=turn_headers, render=session_started)

    def _create_empty(self, request: Request, caller: Caller, agent: Agent, data: dict[str, Any]) -> Response:
        """``empty: true``: the session alone, no turn (files can be uploaded to it before
        its first message)."""
        if wants_event_stream(request):
            raise ValidationError({"empty": ["An empty session has no turn to stream."]}, code="invalid")
        opened = services.open_session_once(
            caller=caller,
            agent=agent,
            idempotency=IdempotentRequest.of(request),
            title=data["title"],
            metadata=data["metadata"],
            user_id=data["user_id"],
        )
        return session_opened(opened, lambda session: {"uuid": str(session.uuid), **turn_urls(request, session)})

    @extend_schema(
        parameters=[
            OpenApiParameter("include", enum=["messages"], description="`messages` adds the transcript."),
        ],
        responses=SessionWithMessagesSerializer,
    )
    def retrieve(self, request: Request, session_uuid: str) -> Response:
        session = self.get_object()
        include = {part.strip() for part in request.query_params.get("include", "").split(",")}
        serializer = SessionWithMessagesSerializer if "messages" in include else SessionDetailSerializer
        return Response(serializer(session, context=self.get_serializer_context()).data)

    @extend_schema(request=SessionUpdateSerializer, responses=SessionSerializer)
    def partial_update(self, request: Request, session_uuid: str) -> Response:
        session = self.get_object()
        data = SessionUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.update_session(session=session, **data.validated_data)
        return Response(self.get_serializer(session).data)

    def perform_destroy(self, instance: Session) -> None:
        services.delete_session(session=instance)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:  # noqa: FBT001, FBT002
        # ``compact`` answers with its own SSE stream, whatever the Accept header asks; a
        # create that asks for the stream gets it (its errors stay JSON).
        force = force or self.action == "compact" or (self.action == "create" and wants_event_stream(request))
        return super().perform_content_negotiation(request, force=force)

    @extend_schema(
        request=CompactSerializer,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                COMPACTION_EVENT,
                description="`start`, the summary as `text-start`/`text-delta`/`text-end`, "
                "`data-compaction {data: {before_tokens, after_tokens, messages_compacted}}`, `finish` "
                "(`error` before it when the model fails).",
            ),
            409: error_response("`run_active`: a run is active; compact after it ends."),
            **IDEMPOTENCY_ERRORS,
            503: REDIS_UNAVAILABLE,
        },
    )
    def compact(self, request: Request, **kwargs: str) -> HttpResponse | Response:
        """Summarise the session's earlier messages (all but ``keep_last``) with its model,
        streamed; later prompts use the summary and the messages after it. The summary is
        written by a worker as a compaction run, relayed here and resumable on ``Location``;
        the same ``Idempotency-Key`` replays that run's stream instead of writing another."""
        session = self.get_object()
        data = CompactSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=session,
            compact=data.validated_data["keep_last"],
        )
        return answer_compaction(request, start, wire=UIMessageFormat())

    @extend_schema(responses=ContextUsageSerializer)
    def context_usage(self, request: Request, **kwargs: str) -> Response:
        """The tokens the session's next prompt takes of the model's context, by part."""
        usage = context.context_usage(self.get_object())
        return Response(ContextUsageSerializer(usage).data)


class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_field = "uuid"
    lookup_url_kwarg = "message_uuid"
    serializer_class = MessageSerializer

    def get_session(self) -> Session:
        if not hasattr(self, "_session"):
            sessions = Session.objects.reachable_by(self.request.auth).select_related("agent")
            self._session = get_object_or_404(sessions, uuid=self.kwargs["session_uuid"])
        return self._session

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Message.objects.none()
        return self.get_session().messages.transcript()

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:  # noqa: FBT001, FBT002
        # A create that asks for the turn's stream gets it (its errors stay JSON).
        force = force or (self.action == "create" and wants_event_stream(request))
        return super().perform_content_negotiation(request, force=force)

    @extend_schema(
        request=MessageCreateSerializer,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        examples=[
            OpenApiExample("Wait for the reply", {"text": "And five dogs?", "stream": False}, request_only=True),
            OpenApiExample(
                "Queue behind the active run", {"text": "Thanks!", "on_active_run": "enqueue"}, request_only=True
            ),
        ],
        responses={
            201: PolymorphicProxySerializer(
                component_name="TurnOrReply",
                serializers=[TurnStartedSerializer, MessageSerializer],
                resource_type_field_name=None,
                help_text="The queued turn; with `stream: false`, the agent message once the run ended.",
            ),
            409: error_response(
                "`run_active`: a run is active (details: its run_uuid, status and stream_url); "
                "`requires_action` (`stream: false`): the turn waits for an answer (details: its pending_actions)."
            ),
            413: TEXT_TOO_LONG,
            **IDEMPOTENCY_ERRORS,
            503: REDIS_UNAVAILABLE,
            504: error_response("`run_timeout` (`stream: false`): the run goes on; details name it and its URL."),
        },
    )
    def create(self, request: Request, session_uuid: str) -> Response | HttpResponse:
        session = self.get_session()
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=session,
            text=fields["text"],
            metadata=fields["metadata"],
            ui_context=fields["ui_context"],
            scan_context=fields["scan_context"],
            file_ids=fields["file_ids"],
            on_active_run=fields["on_active_run"],
        )
        streamed = wants_event_stream(request)
        wait = not streamed and request.data.get("stream") is False
        try:
            return answer_turn(
                request,
                start,
                wire=UIMessageFormat() if streamed else None,
                headers=turn_headers,
                wait=wait,
                render=reply_rendered if wait else message_started,
            )
        except RunActive as exc:
            exc.details["stream_url"] = absolute_url(request, "runs:session-stream", session_uuid=session.uuid)
            raise

    @extend_schema(
        request=None,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={
            201: ReplyStartedSerializer,
            400: error_response("`not_a_reply`: the message is a user message."),
            409: error_response(
                "`run_active`: a run is active; `not_the_last_reply`: a later reply exists (edit the message "
                "before it instead); `message_replaced`: this reply was already replaced."
            ),
            **IDEMPOTENCY_ERRORS,
            503: REDIS_UNAVAILABLE,
        },
    )
    def regenerate(self, request: Request, session_uuid: str, message_uuid: str) -> Response:
        """Answer the chat's last reply again: a new run and agent message for the same user
        message. The old reply stays in the transcript (with its rating), its ``replaced_by``
        naming the new one; later prompts leave it out."""

        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=self.get_session(),
            regenerate=self.get_object(),
            check_last=True,
        )
        return answer_turn(request, start, render=reply_started)

    @extend_schema(
        request=MessageEditSerializer,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={
            201: ReplyStartedSerializer,
            400: error_response("`not_a_user_message`: only a user message can be edited."),
            409: error_response(
                "`run_active`: a run is active; `message_replaced`: the message was already replaced; "
                "`message_compacted`: a compaction summarised it."
            ),
            413: TEXT_TOO_LONG,
            **IDEMPOTENCY_ERRORS,
            503: REDIS_UNAVAILABLE,
        },
    )
    def edit(self, request: Request, session_uuid: str, message_uuid: str) -> Response:
        """Edit a sent user message: a new turn from that point. A new user message (with the
        same attachments) and a new run; the edited message and every message after it stay
        in the transcript, their ``replaced_by`` naming the new user message, and later
        prompts leave them out."""

        message = self.get_object()
        data = MessageEditSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=self.get_session(),
            edit=message,
            text=data.validated_data["text"],
        )
        return answer_turn(request, start, render=reply_started)


def session_started(request: Request, turn: Turn) -> Response:
    body = {"uuid": str(turn.session.uuid), **turn_urls(request, turn.session), **run_urls(request, turn.run)}
    if turn.client_secret:
        body["client_secret"] = turn.client_secret
    return Response(body, status=status.HTTP_201_CREATED)


def message_started(request: Request, turn: Turn) -> Response:
    stream_url = absolute_url(request, "runs:session-stream", session_uuid=turn.session.uuid)
    body = {"uuid": str(turn.run.agent_message.uuid), "stream_url": stream_url, **run_urls(request, turn.run)}
    return Response(body, status=status.HTTP_201_CREATED)


def reply_started(request: Request, turn: Turn) -> Response:
    """A regenerated reply or an edited message: the new reply, its user message and run."""
    run = turn.run
    body = {
        "uuid": str(run.agent_message.uuid),
        "user_message_uuid": str(run.user_message.uuid),
        "stream_url": absolute_url(request, "runs:session-stream", session_uuid=turn.session.uuid),
        **run_urls(request, run),
    }
    return Response(body, status=status.HTTP_201_CREATED)


def reply_rendered(request: Request, turn: Turn) -> Response:
    """``stream: false``: the agent message once the run ended."""
    message = reply_of(request, turn.run)
    return Response(MessageSerializer(message, context={"request": request}).data, status=status.HTTP_201_CREATED)


class UploadViewSet(viewsets.GenericViewSet):
    """``sessions/{s}/uploads``: files to attach to the session's messages."""

    lookup_field = "file_id"
    serializer_class = UploadSerializer
    parser_classes = [GenieMultiPartParser]  # the create's body; the GETs have none

    def get_session(self) -> Session:
        if not hasattr(self, "_session"):
            sessions = Session.objects.reachable_by(self.request.auth)
            self._session = get_object_or_404(sessions, uuid=self.kwargs["session_uuid"])
        return self._session

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Upload.objects.none()
        return self.get_session().uploads.select_related("session")

    def get_object(self) -> Any:
        return get_object_or_404(self.get_queryset(), file_id=self.kwargs["file_id"])

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:  # noqa: FBT001, FBT002
        # ``…/content`` answers with the file whatever the Accept header asks; errors stay JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        request=UPLOAD_REQUEST,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={
            201: UploadSerializer,
            413: error_response("`file_too_large`: over GENIE_MAX_UPLOAD_BYTES; `request_too_large`."),
            415: error_response(
                "`unsupported_file_type`: the bytes are not text, JSON, PDF, PNG, JPEG, WebP or GIF; "
                "`unsupported_media_type`: the body is not multipart."
            ),
            **IDEMPOTENCY_ERRORS,
        },
    )
    def create(self, request: Request, session_uuid: str) -> Response:
        """Upload one file (multipart, field ``file``); its type is judged from its bytes."""
        return run_idempotently(request, lambda: self._create(request))

    def _create(self, request: Request) -> Response:
        session = self.get_session()
        file = request.FILES.get("file")
        if file is None:
            raise ValidationError({"file": ["Send the file as the multipart field `file`."]}, code="required")
        upload = services.store_upload(session=session, file=file, filename=file.name or "")
        return Response(self.get_serializer(upload).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, session_uuid: str, file_id: str) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(responses={(200, "*/*"): OpenApiTypes.BINARY})
    def content(self, request: Request, session_uuid: str, file_id: str) -> FileResponse:
        """The file's bytes, as uploaded, served as a download."""
        upload = self.get_object()
        response = FileResponse(
            upload.file.open("rb"), as_attachment=True, filename=upload.filename, content_type=upload.content_type
        )
        response["X-Content-Type-Options"] = "nosniff"
        return response


class AgentViewSet(TeamConfigViewSet):
    """``agents``: the team's agents, by handle (secret key only)."""

    serializer_class = AgentSerializer
    lookup_field = "handle"

    def get_queryset(self) -> QuerySet[Agent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Agent.objects.none()
        return Agent.objects.for_team(self.request.auth.team).live().order_by("handle")

    @extend_schema(responses={201: AgentCreatedSerializer})
    def create(self, request: Request) -> Response:
        """The new agent, with its ``webhook_secret``: shown here once, never again."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agent = services.save_agent(team=request.auth.team, **serializer.validated_data)
        body = {**self.get_serializer(agent).data, "webhook_secret": agent.webhook_secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "WebhookSecret", {"handle": serializers.SlugField(), "webhook_secret": serializers.CharField()}
        ),
    )
    def rotate_webhook_secret(self, request: Request, handle: str) -> Response:
        """``POST agents/{handle}/webhook-secret``: a new secret for signing webhook tool
        calls (the old one stops at once); shown in this answer only."""
        agent = self.get_object()
        return Response({"handle": agent.handle, "webhook_secret": agent.rotate_webhook_secret()})

    def perform_update(self, serializer: AgentSerializer) -> None:
        serializer.instance = services.save_agent(
            team=self.request.auth.team, agent=serializer.instance, **serializer.validated_data
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("force", bool, description="Archive an agent that has sessions instead of refusing."),
        ],
        responses={
            200: OpenApiResponse(AgentSerializer, description="Archived (it had sessions and `force` was given)."),
            204: OpenApiResponse(description="Deleted."),
            409: error_response("`agent_in_use`: the agent has sessions (details: how many); pass `force=true`."),
        },
    )
    def destroy(self, request: Request, handle: str) -> Response:
        force = request.query_params.get("force", "").lower() in {"1", "true", "yes"}
        agent = self.get_object()
        if services.remove_agent(agent=agent, force=force) == "archived":
            return Response(self.get_serializer(agent).data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AgentProfileView(APIView):
    """``GET agent-profile?agent=<handle>``: what an empty chat shows of an agent (its name,
    description, greeting and suggested prompts), for every caller that may start a session
    with it: a publishable key (the widget) sees only public agents. Without ``agent``, the
    team's default agent, as ``POST sessions`` picks it."""

    @extend_schema(
        parameters=[OpenApiParameter("agent", str, description="An agent's handle (or uuid); blank: the default.")],
        responses={200: AgentProfileSerializer, 404: error_response("`not_found`: no such agent for this caller.")},
    )
    def get(self, request: Request) -> Response:
        handle = request.query_params.get("agent", "").strip()
        agent = Agent.objects.startable_by(request.auth).pick(handle or None)
        if agent is None:
            raise NotFound("No such agent.")
        return Response(AgentProfileSerializer(agent).data)
