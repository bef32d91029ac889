"""Seed 001, the headless "genies" API, under ``/api/v1/genies/{handle}/chat/``.

A conversation is a session of the agent the URL names (by handle, or uuid); a genie run
is a run. Every write goes through the canonical services (``chat.services``,
``runs.services``, ``runs.connections``) and every read through the one access rule
(``Session.objects.reachable_by``), further scoped to the URL's agent. Streams are the
relay's, in seed 001's wire format (``runs.formats.seed001``): a message sent with
``stream: true`` answers with its turn's stream, and ``…/genie-runs/{run}`` (routed by
``genie.asgi`` to ``runs.sse.StreamApp``) replays or resumes one run with Last-Event-ID.
Errors take the one error path in this API's voice (``seed001_error``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.models import Agent, Message, Session
from chat.views import UPLOAD_REQUEST, session_opened
from genie.idempotency import IdempotentRequest, run_idempotently
from genie.links import absolute_url
from genie.parsers import GenieMultiPartParser
from genie.schema import IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, SECURITY
from protocols.base import ProtocolView, field_errors, find_session, parse_uuid, pick_agent
from protocols.seed001.serializers import (
    ConversationCreateSerializer,
    ConversationEventQuerySerializer,
    ConversationEventSerializer,
    ConversationMessageSerializer,
    ConversationSerializer,
    ConversationUploadSerializer,
    GenieRunStartedSerializer,
    RuntimeConnectionSerializer,
    SendMessageSerializer,
)
from runs import connections
from runs import services as run_services
from runs.events import iso_utc
from runs.formats import Seed001Format
from runs.formats.seed001 import Reply, seed001_events
from runs.handoff import answer_turn
from runs.models import ConnectionAttempt, Run, RunEvent, ToolCall
from runs.serializers import (
    ConnectionLinkSerializer,
    ToolCallApprovalSerializer,
)
from runs.services import Turn

TAGS = ["seed 001"]
PREFIX = "genies/<str:handle>/chat/"
# Routed to the relay by genie.asgi (the Django view below only names it and answers under WSGI).
GENIE_RUN_STREAM_PATH = f"{PREFIX}conversations/<uuid:session_uuid>/genie-runs/<uuid:run_uuid>"


# --- errors ------------------------------------------------------------------------------


def seed001_error(code: str, message: str, details: Any, status_code: int) -> dict[str, Any]:
    """Seed 001's error body (the document shows none; this one is flat, with the status,
    and names each bad field): ``{status, code, message, errors: [{field, message}],
    details}``. A validation error's message names its first field."""
    flat = field_errors(details) if code == "validation_error" else []
    # A field's name dotted (``messages.0.content``); the positions of nested objects in a list are not named.
    errors = [{"field": ".".join(p for p in e.path if isinstance(p, str)), "message": e.message} for e in flat]
    if errors:
        message = f"{errors[0]['field']}: {errors[0]['message']}"
    return {"status": status_code, "code": code, "message": message, "errors": errors, "details": details}


class Seed001ErrorSerializer(serializers.Serializer):
    class FieldErrorSerializer(serializers.Serializer):
        field = serializers.CharField()
        message = serializers.CharField()

    status = serializers.IntegerField(help_text="The HTTP status.")
    code = serializers.CharField(help_text="Stable, snake_case: `conversation_not_found`, `validation_error`…")
    message = serializers.CharField()
    errors = FieldErrorSerializer(many=True, help_text="The fields a 400 refuses; empty otherwise.")
    details = serializers.JSONField(allow_null=True, help_text="Null, or what the code needs.")


def seed001_errors(*statuses: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "A bad body or query: `validation_error`, each field named in `errors`.",
        401: "No credentials, or invalid ones (`not_authenticated`, `authentication_failed`).",
        403: "Credentials that may not do this (`permission_denied`, `origin_not_allowed`).",
        404: "No such genie, conversation, genie run, skill call or attempt, or not the caller's.",
        409: "The state does not allow it: `run_active`, `already_decided`, `connection_attempt_closed`.",
        413: "Too large: `text_too_long`, `file_too_large`, `request_too_large`.",
        415: "`unsupported_file_type`, `unsupported_media_type`.",
        422: "`idempotency_key_reused`: the Idempotency-Key came with another body.",
        429: "Too many requests or open streams (`rate_limited`, `too_many_streams`).",
        501: "`asgi_required`: this server runs under WSGI, which cannot serve streams.",
        503: "`redis_unavailable`: nothing was created; retry shortly.",
    }
    common = (400, 401, 403, 404, 413, 415, 429)
    return {
        code: OpenApiResponse(Seed001ErrorSerializer, description=descriptions[code])
        for code in sorted({*common, *statuses})
    }


HANDLE = OpenApiParameter("handle", str, OpenApiParameter.PATH, description="The genie (agent): its handle or uuid.")
CONVERSATION = OpenApiParameter(
    "session_uuid", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The `conversation_id`."
)

# One event of seed 001's stream as an SSE client parses it.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]+)?$",
            "description": "The event's own id, for Last-Event-ID: its id in the conversation, or "
            "`<id>.<n>` for the frames before the last of one stored event (`agent.message` before "
            "`processing.finished`).",
        },
        "event": {"type": "string", "description": "`processing.started`, `skill.confirmation_required`…"},
        "data": {
            "type": "string",
            "description": "The event's JSON; it names its `genie_run_id` and has `created_at` (ISO 8601, UTC).",
        },
    },
    "required": ["id", "event", "data"],
}


class Seed001View(ProtocolView):
    """What every seed 001 view shares: its error voice, JSON whatever the Accept header
    asks (a client that accepts only SSE still reads its errors), and the lookups scoped
    to the URL's genie."""

    error_voice = staticmethod(seed001_error)
    json_always = True
    kwargs: dict[str, Any]
    request: Request

    def genie_agents(self) -> QuerySet[Agent]:
        return Agent.objects.for_team(self.request.auth.team).by_handle_or_uuid(self.kwargs["handle"])

    def get_conversation(self, session_uuid: Any = None) -> Session:
        if not hasattr(self, "_conversation"):
            self._conversation = find_session(
                self.request.auth,
                session_uuid or self.kwargs["session_uuid"],
                sessions=Session.objects.reachable_by(self.request.auth).filter(agent__in=self.genie_agents()),
                missing=NotFound("No such conversation with this genie.", code="conversation_not_found"),
            )
        return self._conversation


# --- views ---------------------------------------------------------------------------------


def genie_run_url(request: Request, run: Run) -> str:
    kwargs = {"handle": run.session.agent.handle, "session_uuid": run.session.uuid, "run_uuid": run.uuid}
    return absolute_url(request, "seed001:genie-run", **kwargs)


def turn_headers(request: Request, turn: Turn) -> dict[str, str]:
    """A streamed send names its run (the stream's first event does too) and where to resume."""
    return {"Genie-Run-Id": str(turn.run.uuid), "Location": genie_run_url(request, turn.run)}


def genie_run_started(request: Request, turn: Turn) -> Response:
    body = {
        "conversation_id": str(turn.session.uuid),
        "genie_handle": turn.session.agent.handle,
        "genie_run_id": str(turn.run.uuid),
        "message_id": str(turn.run.agent_message.uuid),
        "status": Run.Status.QUEUED,  # as it was queued (a replay says the same)
        "stream_url": genie_run_url(request, turn.run),
    }
    return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS, parameters=[HANDLE])
class ConversationCreateView(Seed001View, generics.GenericAPIView):
    """``POST conversations``: a conversation with the genie, with no message yet."""

    serializer_class = ConversationSerializer

    @extend_schema(
        request=ConversationCreateSerializer,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={201: ConversationSerializer, **seed001_errors(422)},
    )
    def post(self, request: Request, handle: str) -> Response:
        data = ConversationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        missing = NotFound("No such genie.", code="genie_not_found")
        agent = pick_agent(request.auth, self.kwargs["handle"], missing=missing, default=False)
        opened = services.open_session_once(
            caller=request.auth, agent=agent, idempotency=IdempotentRequest.of(request), **data.validated_data
        )
        return session_opened(opened, lambda session: ConversationSerializer(session).data)


@extend_schema(tags=TAGS, parameters=[HANDLE, CONVERSATION])
@extend_schema_view(list=extend_schema(responses={200: ConversationMessageSerializer(many=True), **seed001_errors()}))
class ConversationMessagesView(Seed001View, mixins.ListModelMixin, viewsets.GenericViewSet):
    """``GET conversations/{id}/messages``: the history, oldest first; ``POST``: send the
    next message (``stream: true`` answers with the turn's SSE stream)."""

    serializer_class = ConversationMessageSerializer

    def get_queryset(self) -> QuerySet[Message]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Message.objects.none()
        return self.get_conversation().messages.transcript()

    @extend_schema(
        request=SendMessageSerializer,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={
            201: GenieRunStartedSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                SSE_EVENT,
                description="`stream: true`: the turn's events, `id:` + `event:` + `data:`, from "
                "`processing.started` to `processing.finished`; header `Genie-Run-Id`, `Location` to resume.",
            ),
            **seed001_errors(409, 422, 503),
        },
    )
    def create(self, request: Request, handle: str, session_uuid: str) -> Response | HttpResponse:
        conversation = self.get_conversation()  # an unknown conversation is 404 before a bad body is 400
        data = SendMessageSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        start = lambda: services.start_turn(  # noqa: E731
            caller=request.auth,
            idempotency=IdempotentRequest.of(request),
            session=conversation,
            text=fields["text"],
            metadata=fields["metadata"],
            file_ids=[fields["file_id"]] if fields["file_id"] else [],
        )
        wire = Seed001Format() if fields["stream"] else None
        return answer_turn(request, start, wire=wire, headers=turn_headers, render=genie_run_started)


@extend_schema(tags=TAGS, parameters=[HANDLE, CONVERSATION])
class ConversationUploadView(Seed001View, viewsets.GenericViewSet):
    """``POST conversations/{id}/upload`` (multipart ``file``): its ``file_id`` goes in a
    message's ``file_id``."""

    serializer_class = ConversationUploadSerializer
    parser_classes = [GenieMultiPartParser]

    @extend_schema(
        request=UPLOAD_REQUEST,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={201: ConversationUploadSerializer, **seed001_errors(422)},
    )
    def create(self, request: Request, handle: str, session_uuid: str) -> Response:
        return run_idempotently(request, lambda: self._create(request))

    def _create(self, request: Request) -> Response:
        conversation = self.get_conversation()
        file = request.FILES.get("file")
        if file is None:
            raise ValidationError({"file": ["Send the file as the multipart field `file`."]}, code="required")
        upload = services.store_upload(session=conversation, file=file, filename=file.name or "")
        return Response(self.get_serializer(upload).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=TAGS, parameters=[HANDLE, CONVERSATION])
class SkillApprovalView(Seed001View, APIView):
    """``POST conversations/{id}/skill_approval/{call_id} {approved, reason?}``: approve or
    reject the skill call a ``skill.confirmation_required`` event named."""

    @extend_schema(
        request=ToolCallApprovalSerializer,
        responses={
            200: inline_serializer(
                "Seed001SkillDecision",
                {
                    "call_id": serializers.CharField(),
                    "status": serializers.CharField(help_text="`approved` or `denied`."),
                    "conversation_id": serializers.UUIDField(),
                    "genie_handle": serializers.CharField(),
                },
            ),
            **seed001_errors(409),
        },
    )
    def post(self, request: Request, handle: str, session_uuid: str, call_id: str) -> Response:
        conversation = self.get_conversation()
        data = ToolCallApprovalSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run_services.decide_tool_call(
                session=conversation, call_id=call_id, decided_by=request.auth.label, **data.validated_data
            )
        except ToolCall.DoesNotExist as exc:
            raise NotFound("No such skill call in this conversation.", code="skill_call_not_found") from exc
        decision = "approved" if data.validated_data["approved"] else "denied"
        body = {"call_id": call_id, "status": decision}
        return Response({**body, "conversation_id": str(conversation.uuid), "genie_handle": conversation.agent.handle})


class RuntimeConnectionView(Seed001View, APIView):
    def find_attempt(self, attempt_id: str) -> tuple[ConnectionAttempt, Agent]:
        """The attempt must be reachable and wait for a call of this genie's conversation.
        (The route takes any text, so that a malformed id is this API's 404 too.)"""
        not_found = NotFound("No such runtime connection attempt for this genie.", code="runtime_connection_not_found")
        agent = self.genie_agents().first()
        attempt = None
        if agent is not None and parse_uuid(attempt_id) is not None:
            attempts = ConnectionAttempt.objects.reachable_by(self.request.auth)
            attempt = attempts.filter(attempt_id=attempt_id, tool_calls__run__session__agent=agent).first()
        if attempt is None:
            raise not_found
        return attempt, agent

    @staticmethod
    def in_seed_voice(body: dict[str, Any], agent: Agent) -> Response:
        body = dict(body)
        return Response(
            {"runtime_connection_attempt_id": str(body.pop("attempt_id")), **body, "genie_handle": agent.handle}
        )


RUNTIME_CONNECTION = {200: RuntimeConnectionSerializer, **seed001_errors(409)}
ATTEMPT = OpenApiParameter(
    "attempt_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The `runtime_connection_attempt_id`."
)


@extend_schema(tags=TAGS, parameters=[HANDLE, ATTEMPT])
class RuntimeConnectionLinkView(RuntimeConnectionView):
    """``POST runtime_connection/{attempt_id}/link``: ``auth_required`` with an
    ``auth_link`` to present, or ``authorized`` when it is done."""

    @extend_schema(request=None, responses=RUNTIME_CONNECTION)
    def post(self, request: Request, handle: str, attempt_id: str) -> Response:
        attempt, agent = self.find_attempt(attempt_id)
        link = connections.link_connection(attempt=attempt)
        if link is None:
            return self.in_seed_voice({"attempt_id": str(attempt.attempt_id), "status": "authorized"}, agent)
        body = {"attempt_id": attempt.attempt_id, "status": "auth_required", "auth_link": vars(link)}
        return self.in_seed_voice(ConnectionLinkSerializer(body).data, agent)


@extend_schema(tags=TAGS, parameters=[HANDLE, ATTEMPT])
class RuntimeConnectionRejectView(RuntimeConnectionView):
    """``POST runtime_connection/{attempt_id}/reject``: the skill call fails ("connection
    declined") and the genie goes on."""

    @extend_schema(request=None, responses=RUNTIME_CONNECTION)
    def post(self, request: Request, handle: str, attempt_id: str) -> Response:
        attempt, agent = self.find_attempt(attempt_id)
        connections.reject_connection(attempt=attempt)
        return self.in_seed_voice({"attempt_id": str(attempt.attempt_id), "status": "rejected"}, agent)


@extend_schema(
    tags=TAGS,
    parameters=[
        HANDLE,
        OpenApiParameter("conversation_id", str, required=True, description="The conversation."),
        OpenApiParameter("since_created_at", str, description="Only events stored after this time (ISO 8601)."),
        OpenApiParameter("since_id", int, description="Only events after this id; not with since_created_at."),
    ],
    responses={200: ConversationEventSerializer(many=True), **seed001_errors()},
)
class ConversationEventsView(Seed001View, viewsets.GenericViewSet):
    """``GET conversations/events?conversation_id=&since_created_at=``: the stream's
    events, stored 24 h, oldest first. A page covers ``page_size`` stored events; a run's
    end is two (``agent.message``, ``processing.finished``)."""

    @cached_property
    def event_query(self) -> dict[str, Any]:
        """The validated query parameters (400 on bad ones), read once per request."""
        query = ConversationEventQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        return query.validated_data

    def get_queryset(self) -> QuerySet[RunEvent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return RunEvent.objects.none()
        conversation = self.get_conversation(self.event_query["conversation_id"])
        return conversation.events.of_turns().select_related("run__agent_message").since(self.event_query)

    def list(self, request: Request, handle: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        since_id = self.event_query.get("since_id", 0)
        events = [event for row in page for event in self.seed_events(row, since_id)]
        return self.get_paginated_response(ConversationEventSerializer(events, many=True).data)

    @staticmethod
    def seed_events(row: RunEvent, since_id: int) -> list[dict[str, Any]]:
        message = row.run.agent_message
        reply = Reply(message_id=str(message.uuid), text=message.text, status=row.run.status)
        named = seed001_events(row.data_after(since_id), genie_run_id=str(row.run.uuid), reply=reply)
        run_id = row.run.uuid
        created_at = iso_utc(row.created_at)  # as the stream writes it
        return [
            {
                "id": row.seq,
                "event": name,
                "genie_run_id": run_id,
                "data": {**data, "created_at": created_at},
                "created_at": row.created_at,
            }
            for name, data in named
        ]


@extend_schema(tags=TAGS)
class GenieRunStreamView(Seed001View, generics.GenericAPIView):
    """Served by the relay under ASGI (``genie.asgi``); this answers only under WSGI and
    gives the URL its name and schema."""

    @extend_schema(
        description="The genie run's events as SSE (`id:`, `event:`, `data:`), from its start or, with "
        "`Last-Event-ID`, the events after that id; it ends after `processing.finished`.",
        auth=SECURITY,
        parameters=[
            HANDLE,
            CONVERSATION,
            OpenApiParameter("run_uuid", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The `genie_run_id`."),
            OpenApiParameter(
                "Last-Event-ID",
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
                location=OpenApiParameter.HEADER,
                description="Resume after this event: the `id` of the last one received (`<id>` or `<id>.<n>`).",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT, description="The run's events."),
            204: OpenApiResponse(description="The client has every event up to `processing.finished`."),
            **seed001_errors(501),
        },
    )
    def get(self, request: Request, **kwargs: str) -> Response:
        message = "Streams are served by the ASGI server (Daphne)."
        return Response(seed001_error("asgi_required", message, None, 501), status=501)
