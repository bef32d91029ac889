from __future__ import annotations

from functools import cached_property
from typing import Any

import django_filters
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.models import Session
from genie.auth import NotPublishable
from genie.exceptions import error_body
from genie.schema import SECURITY, error_response
from genie.views import TeamConfigViewSet
from runs import connections, services
from runs.exceptions import ConnectionLinkNotForThisBrowser, InvalidConnectionState, UnboundConnectionLink
from runs.models import Connection, ConnectionAttempt, ConnectionProvider, Run, RunEvent, ToolCall
from runs.oauth import OAuthFailure
from runs.serializers import (
    ConnectionLinkSerializer,
    ConnectionProviderSerializer,
    ConnectionRejectSerializer,
    ConnectionSerializer,
    EventQuerySerializer,
    RunEventSerializer,
    RunSerializer,
    StopResultSerializer,
    ToolCallApprovalSerializer,
    ToolCallResultSerializer,
)
from runs.waiting import stop_and_wait

EVENT_ID = {"type": "integer", "minimum": 0}


class SessionStopView(APIView):
    """``POST sessions/{s}/stream/stop``: stop the active run and those queued behind it;
    answers once the run's worker honoured the stop (or GENIE_STOP_WAIT passed) with what
    became of the run (``runs.waiting.stop_and_wait``)."""

    @extend_schema(request=None, responses=StopResultSerializer)
    def post(self, request: Request, session_uuid: str) -> Response:
        session = get_object_or_404(Session.objects.reachable_by(request.auth), uuid=session_uuid)
        outcome = stop_and_wait(session=session)
        return Response(StopResultSerializer.of(session_uuid=session.uuid, outcome=outcome))


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A session's runs, oldest first; one run's status, error, usage and timings."""

    serializer_class = RunSerializer
    lookup_field = "uuid"
    lookup_url_kwarg = "run_uuid"

    def get_queryset(self) -> QuerySet[Run]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Run.objects.none()
        session = get_object_or_404(Session.objects.reachable_by(self.request.auth), uuid=self.kwargs["session_uuid"])
        return (
            session.runs.turns()
            .select_related("session", "user_message", "agent_message")
            .defer("user_message__text", "agent_message__text")  # only their uuids are shown; a reply can be MBs
            .order_by("created_at", "id")
        )


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("since_id", EVENT_ID, description="Only events after this id; not with since_created_at."),
            OpenApiParameter(
                "since_created_at", OpenApiTypes.DATETIME, description="Only events stored after this time."
            ),
        ]
    )
)
class SessionEventsView(mixins.ListModelMixin, viewsets.GenericViewSet):
    """``GET sessions/{s}/events?since_id=N | since_created_at=ISO``: stored events, oldest
    first, kept GENIE_EVENT_RETENTION."""

    serializer_class = RunEventSerializer
    query_serializer_class = EventQuerySerializer

    @cached_property
    def event_query(self) -> dict[str, Any]:
        """The validated query parameters (400 on bad ones), read once per request."""
        query = self.query_serializer_class(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        return query.validated_data

    def get_session(self) -> Session:
        return get_object_or_404(Session.objects.reachable_by(self.request.auth), uuid=self.kwargs["session_uuid"])

    def get_queryset(self) -> QuerySet[RunEvent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return RunEvent.objects.none()
        return self.get_session().events.select_related("run").since(self.event_query)

    def get_serializer_context(self) -> dict[str, Any]:
        since_id = self.event_query.get("since_id", 0) if hasattr(self, "request") else 0
        return {**super().get_serializer_context(), "since_id": since_id}


# One event of a stream, as an SSE client parses it (the schema of text/event-stream).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event's id in its session."},
        "data": {"type": "string", "description": "The chunk as JSON: `start`, `text-delta`, `finish`..."},
    },
    "required": ["id", "data"],
}


class StreamOutsideAsgiView(APIView):
    """Streams are served by the ASGI relay (``runs.sse``); this answers only when the
    project runs under plain WSGI, and gives the URL a name to reverse."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        description="Server-Sent Events (the AI SDK UI message stream protocol), served by the ASGI server. "
        "The session stream replays the active run and tails it (with Last-Event-ID: every later event of "
        "the session); a run's own stream replays that run, finished or not.",
        auth=SECURITY,
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                EVENT_ID,
                location=OpenApiParameter.HEADER,
                description="Resume after this event id (a non-negative integer).",
            ),
            OpenApiParameter(
                "last_event_id", EVENT_ID, description="The same, for clients that cannot set the header."
            ),
            OpenApiParameter(
                "x-vercel-ai-ui-message-stream",
                location=OpenApiParameter.HEADER,
                response=[200],
                enum=["v1"],
                description="The stream's protocol version.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(SSE_EVENT, description="`id: N` + `data: {json}` events."),
            204: OpenApiResponse(description="Nothing to stream: no active run, or its finish was delivered."),
            400: error_response("`invalid_last_event_id`; `invalid_header`: a header is not valid UTF-8."),
            501: error_response("`asgi_required`: this server runs under WSGI, which cannot serve streams."),
        },
    )
    def get(self, request: Request, **kwargs: str) -> Response:
        return Response(error_body("asgi_required", "Streams are served by the ASGI server (Daphne)."), status=501)


class ToolCallApprovalView(APIView):
    """``POST sessions/{s}/tool-calls/{call_id}/approval {approved, reason?}``: decide a
    tool call that needs confirmation (409 ``already_decided`` the second time)."""

    @extend_schema(
        request=ToolCallApprovalSerializer,
        responses={
            200: inline_serializer(
                "ToolCallDecision",
                {"call_id": serializers.CharField(), "status": serializers.ChoiceField(choices=["approved", "denied"])},
            ),
            409: error_response("`already_decided`: the call was decided before (or waits for no decision)."),
        },
    )
    def post(self, request: Request, session_uuid: str, call_id: str) -> Response:
        session = get_object_or_404(Session.objects.reachable_by(request.auth), uuid=session_uuid)
        data = ToolCallApprovalSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.decide_tool_call(
                session=session, call_id=call_id, decided_by=request.auth.label, **data.validated_data
            )
        except ToolCall.DoesNotExist as exc:
            raise NotFound("No such tool call in this session.") from exc
        status = "approved" if data.validated_data["approved"] else "denied"
        return Response({"call_id": call_id, "status": status})


class ToolCallResultView(APIView):
    """``POST sessions/{s}/tool-calls/{call_id}/result {output} | {error}``: the result of
    a client tool (a UI command the client ran); ``status: recorded`` for a command whose
    turn did not wait for it."""

    @extend_schema(
        request=ToolCallResultSerializer,
        responses={
            200: inline_serializer(
                "ToolCallResult",
                {
                    "call_id": serializers.CharField(),
                    "status": serializers.CharField(
                        help_text="The call's status (`succeeded`, `failed`), or `recorded` for a UI command "
                        "whose turn went on without waiting (`wait_for_result: false`)."
                    ),
                },
            ),
            409: error_response(
                "`already_decided`: the call waits for no result (answered before, or not a client tool)."
            ),
        },
    )
    def post(self, request: Request, session_uuid: str, call_id: str) -> Response:
        session = get_object_or_404(Session.objects.reachable_by(request.auth), uuid=session_uuid)
        data = ToolCallResultSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            call = services.submit_tool_result(session=session, call_id=call_id, **data.validated_data)
        except ToolCall.DoesNotExist as exc:
            raise NotFound("No such tool call in this session.") from exc
        return Response({"call_id": call_id, "status": ToolCall.RECORDED if call.is_ui_command else call.status})


# --- connections ------------------------------------------------------------------------


class ConnectionProviderViewSet(TeamConfigViewSet):
    """``connection-providers``: the team's OAuth providers, by slug (secret key only)."""

    serializer_class = ConnectionProviderSerializer
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[ConnectionProvider]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return ConnectionProvider.objects.none()
        return ConnectionProvider.objects.of_team(self.request.auth.team).order_by("slug")

    def perform_create(self, serializer: ConnectionProviderSerializer) -> None:
        serializer.save(team=self.request.auth.team)


class ConnectionFilter(django_filters.FilterSet):
    user_id = django_filters.CharFilter(field_name="user_id")
    provider = django_filters.CharFilter(field_name="provider__slug")

    class Meta:
        model = Connection
        fields = ["user_id", "provider"]


class ConnectionViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """``GET/DELETE connections``: end users' connections (never their tokens). A secret
    key sees its team's (``?user_id=`` filters), a user its own; DELETE revokes."""

    permission_classes = [NotPublishable]
    serializer_class = ConnectionSerializer
    filterset_class = ConnectionFilter
    lookup_field = "uuid"

    def get_queryset(self) -> QuerySet[Connection]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Connection.objects.none()
        return Connection.objects.visible_to(self.request.auth).select_related("provider")

    def perform_destroy(self, instance: Connection) -> None:
        connections.revoke_connection(connection=instance)


def _reachable_attempt(request: Request, attempt_id: str) -> ConnectionAttempt:
    return get_object_or_404(ConnectionAttempt.objects.reachable_by(request.auth), attempt_id=attempt_id)


class ConnectionLinkView(APIView):
    """``POST connections/{attempt_id}/link``: a link for the end user to authorize the
    provider, or ``authorized`` when it is done. Whoever reaches the session of the
    waiting tool call may ask."""

    @extend_schema(request=None, responses=ConnectionLinkSerializer)
    def post(self, request: Request, attempt_id: str) -> Response:
        attempt = _reachable_attempt(request, attempt_id)
        link = connections.link_connection(attempt=attempt)
        if link is None:
            return Response({"attempt_id": str(attempt.attempt_id), "status": "authorized"})
        body = {"attempt_id": attempt.attempt_id, "status": "auth_required", "auth_link": vars(link)}
        return Response(ConnectionLinkSerializer(body).data)


class ConnectionRejectView(APIView):
    """``POST connections/{attempt_id}/reject``: the user declines; the tool call fails
    ("connection declined") and the turn goes on."""

    @extend_schema(request=None, responses=ConnectionRejectSerializer)
    def post(self, request: Request, attempt_id: str) -> Response:
        attempt = _reachable_attempt(request, attempt_id)
        connections.reject_connection(attempt=attempt)
        return Response({"attempt_id": str(attempt.attempt_id), "status": "rejected"})


@csrf_exempt  # the POST carries its own credential (the session's client secret), never a cookie's authority
@require_http_methods(["GET", "POST"])
def connection_authorize(request: HttpRequest) -> HttpResponse:
    """``GET connections/authorize?state``: the auth link; or ``POST`` (form fields
    ``state``, ``session_secret``) for a publishable key's visitor, whose client opens it
    with the session's client secret. Opens only for the link's requester
    (``runs.connections.requester_of``): a signed-in user's link asks an anonymous browser
    to sign in first and refuses another user; a visitor's link needs its secret. Then
    binds the link to this browser (a cookie, HttpOnly, SameSite=Lax, for the callback's
    path, until the attempt expires) and redirects to the provider. The 400 page for a bad,
    used or expired link, one another browser opened first, or someone else's."""
    form = request.POST if request.method == "POST" else request.GET
    state = form.get("state", "")
    opener = connections.Opener(
        user_pk=request.user.pk if request.user.is_authenticated else None,
        session_secret=request.POST.get("session_secret", ""),
    )
    try:
        opened = connections.open_link(state=state, opener=opener)
    except InvalidConnectionState:
        return render(request, "connections/callback.html", {"outcome": "invalid"}, status=400)
    except ConnectionLinkNotForThisBrowser as refused:
        if refused.sign_in and request.method == "GET":
            return redirect_to_login(request.get_full_path())
        return render(request, "connections/callback.html", {"outcome": "not_yours"}, status=400)
    response = HttpResponseRedirect(opened.provider_url)
    response.set_cookie(
        connections.binding_cookie_name(state),
        opened.binding,
        max_age=max(int((opened.attempt.expires_at - timezone.now()).total_seconds()), 1),
        path=reverse("runs:connection-callback"),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",  # sent on the provider's top-level redirect back, never by another site's request
    )
    return response


@require_GET
def connection_callback(request: HttpRequest) -> HttpResponse:
    """``GET connections/callback?code&state`` (or ``?error&state``): where the provider
    sends the user's browser back. No credentials: the single-use ``state`` names the
    attempt, and the browser must be the one that opened the link (its cookie). Answers a
    small page; 400 for a bad, used or expired state or another browser (nothing changes)."""
    state = request.GET.get("state", "")
    error = request.GET.get("error", "")
    binding = request.COOKIES.get(connections.binding_cookie_name(state), "")
    try:
        attempt = connections.complete_connection(
            state=state, binding=binding, code=request.GET.get("code", ""), error=error
        )
    except InvalidConnectionState:
        return render(request, "connections/callback.html", {"outcome": "invalid"}, status=400)
    except UnboundConnectionLink:
        return render(request, "connections/callback.html", {"outcome": "unbound"}, status=400)
    except OAuthFailure:
        return render(request, "connections/callback.html", {"outcome": "failed"}, status=502)
    outcome = "connected" if attempt.status == ConnectionAttempt.Status.AUTHORIZED else "declined"
    return render(request, "connections/callback.html", {"outcome": outcome, "provider": attempt.provider.name})
