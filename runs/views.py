from __future__ import annotations

from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.models import Session
from genie.exceptions import error_body
from runs import services
from runs.models import Run, RunEvent
from runs.serializers import EventQuerySerializer, RunEventSerializer, RunSerializer


class SessionStopView(APIView):
    """``POST sessions/{s}/stream/stop``: stop the active run and those queued behind it."""

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "StopResult", {"uuid": serializers.UUIDField(), "stopped": serializers.BooleanField()}
        ),
    )
    def post(self, request: Request, session_uuid: str) -> Response:
        session = get_object_or_404(Session.objects.reachable_by(request.auth), uuid=session_uuid)
        stopped = services.stop_session(session=session)
        return Response({"uuid": str(session.uuid), "stopped": stopped})


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
            session.runs.select_related("session", "user_message", "agent_message")
            .defer("user_message__text", "agent_message__text")  # only their uuids are shown; a reply can be MBs
            .order_by("created_at", "id")
        )


class SessionEventsView(mixins.ListModelMixin, viewsets.GenericViewSet):
    """``GET sessions/{s}/events?since_id=N | since_created_at=ISO``: stored events, oldest
    first, kept GENIE_EVENT_RETENTION."""

    serializer_class = RunEventSerializer

    @cached_property
    def event_query(self) -> dict[str, Any]:
        """The validated query parameters (400 on bad ones), read once per request."""
        query = EventQuerySerializer(data=self.request.query_params.dict())
        query.is_valid(raise_exception=True)
        return query.validated_data

    def get_queryset(self) -> QuerySet[RunEvent]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return RunEvent.objects.none()
        session = get_object_or_404(Session.objects.reachable_by(self.request.auth), uuid=self.kwargs["session_uuid"])
        events = session.events.select_related("run").order_by("seq")
        if "since_id" in self.event_query:
            events = events.filter(seq__gt=self.event_query["since_id"])
        if "since_created_at" in self.event_query:
            events = events.filter(created_at__gt=self.event_query["since_created_at"])
        return events

    def get_serializer_context(self) -> dict[str, Any]:
        since_id = self.event_query.get("since_id", 0) if hasattr(self, "request") else 0
        return {**super().get_serializer_context(), "since_id": since_id}


class StreamOutsideAsgiView(APIView):
    """Streams are served by the ASGI relay (``runs.sse``); this answers only when the
    project runs under plain WSGI, and gives the URL a name to reverse."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        responses={(200, "text/event-stream"): str}, description="Server-Sent Events (AI SDK UI message stream)."
    )
    def get(self, request: Request, **kwargs: str) -> Response:
        return Response(error_body("asgi_required", "Streams are served by the ASGI server (Daphne)."), status=501)
