from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.views import get_caller_session
from genie.exceptions import error_body
from runs import services


class SessionStopView(APIView):
    """``POST sessions/{s}/stream/stop``: stop the active run and those queued behind it."""

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "StopResult", {"uuid": serializers.UUIDField(), "stopped": serializers.BooleanField()}
        ),
    )
    def post(self, request: Request, session_uuid: str) -> Response:
        session = get_caller_session(request, session_uuid)
        stopped = services.stop_session(session=session)
        return Response({"uuid": str(session.uuid), "stopped": stopped})


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
