from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from chat.models import Message, Session
from feedback import services
from feedback.export import attachment_disposition, export_rows
from feedback.filters import FeedbackExportFilter, FeedbackFilter
from feedback.models import Feedback
from feedback.renderers import EXPORT_RENDERERS
from feedback.serializers import (
    EXPORT_COLUMNS,
    FeedbackExportSerializer,
    FeedbackInputSerializer,
    FeedbackListItemSerializer,
    FeedbackSerializer,
)
from genie.auth import IsSecretKey
from genie.idempotency import run_idempotently
from genie.schema import IDEMPOTENCY_ERRORS, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, error_response


class MessageFeedbackView(APIView):
    """``sessions/{s}/messages/{m}/feedback``: one rating per agent message."""

    serializer_class = FeedbackSerializer  # for the OpenAPI schema

    def get_message(self, request: Request, session_uuid: str, message_uuid: str) -> Message:
        session = get_object_or_404(Session.objects.reachable_by(request.auth), uuid=session_uuid)
        return get_object_or_404(Message.objects.select_related("session"), session=session, uuid=message_uuid)

    def get(self, request: Request, session_uuid: str, message_uuid: str) -> Response:
        message = self.get_message(request, session_uuid, message_uuid)
        feedback = Feedback.objects.filter(message=message).select_related("message__session").first()
        if feedback is None:
            raise NotFound("This message has no feedback.")
        return Response(FeedbackSerializer(feedback, context={"request": request}).data)

    @extend_schema(
        request=FeedbackInputSerializer,
        parameters=[IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED],
        responses={
            200: OpenApiResponse(FeedbackSerializer, description="Replaced the message's rating."),
            201: OpenApiResponse(FeedbackSerializer, description="Rated the message."),
            400: error_response("`validation_error`; `not_an_agent_message`: only agent messages are rated."),
            **IDEMPOTENCY_ERRORS,
        },
    )
    def post(self, request: Request, session_uuid: str, message_uuid: str) -> Response:
        return run_idempotently(request, lambda: self._rate(request, session_uuid, message_uuid))

    def _rate(self, request: Request, session_uuid: str, message_uuid: str) -> Response:
        message = self.get_message(request, session_uuid, message_uuid)
        data = FeedbackInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feedback, created = services.rate_message(message=message, **data.validated_data)
        return Response(
            FeedbackSerializer(feedback, context={"request": request}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(responses={204: OpenApiResponse(description="Removed.")})
    def delete(self, request: Request, session_uuid: str, message_uuid: str) -> Response:
        message = self.get_message(request, session_uuid, message_uuid)
        if not services.remove_feedback(message=message):
            raise NotFound("This message has no feedback.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class FeedbackViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """``GET feedback``: the ratings of the sessions the caller reaches (a secret key: its
    team's; a personal token or cookie: the user's own sessions), newest first, paginated."""

    serializer_class = FeedbackListItemSerializer
    filterset_class = FeedbackFilter

    def get_queryset(self) -> QuerySet[Feedback]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Feedback.objects.none()
        return Feedback.objects.reachable_by(self.request.auth).for_list()

    @extend_schema(
        operation_id="feedback_list",
        responses={
            200: FeedbackListItemSerializer(many=True),
            400: error_response("`validation_error`: an unknown rating, a malformed session uuid or date."),
        },
    )
    def list(self, request: Request) -> Response:
        return super().list(request)


class FeedbackExportView(generics.ListAPIView):
    """``GET feedback/export?format=csv|json``: the team's ratings as a file (secret key),
    filtered like the admin's list. Errors are JSON whatever the format asked for."""

    permission_classes = [IsSecretKey]
    renderer_classes = list(EXPORT_RENDERERS.values())
    serializer_class = FeedbackExportSerializer
    filterset_class = FeedbackExportFilter
    pagination_class = None  # a file: every row that matches

    def get_queryset(self) -> QuerySet[Feedback]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Feedback.objects.none()
        return Feedback.objects.filter(message__session__in=Session.objects.reachable_by(self.request.auth))

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:  # noqa: FBT001, FBT002  (DRF's signature)
        requested = request.query_params.get(api_settings.URL_FORMAT_OVERRIDE)
        if not force and requested is not None and requested not in EXPORT_RENDERERS:
            raise ValidationError({"format": [f"Choose one of: {', '.join(EXPORT_RENDERERS)}."]})
        return super().perform_content_negotiation(request, force=force)

    def handle_exception(self, exc: Exception) -> Response:
        # The error body is JSON (the one error format), not a CSV of it.
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().handle_exception(exc)

    @extend_schema(
        operation_id="feedback_export",
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=list(EXPORT_RENDERERS),
                description="The file's format (default json); `Accept: text/csv` chooses CSV too.",
            ),
            OpenApiParameter(
                "Content-Disposition",
                location=OpenApiParameter.HEADER,
                response=[200],
                description='`attachment; filename="feedback-<UTC time>.<format>"`',
            ),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(
                FeedbackExportSerializer(many=True), description="Every matching rating, oldest first."
            ),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description=f"The same rows with a header line: {', '.join(EXPORT_COLUMNS)}."
            ),
            (400, "application/json"): error_response("`validation_error`: an unknown format, rating or date."),
            (406, "application/json"): error_response("`not_acceptable`: an Accept header naming neither format."),
        },
    )
    def get(self, request: Request) -> Response:
        return self.list(request)

    def list(self, request: Request) -> Response:
        feedback = self.filter_queryset(self.get_queryset())
        return Response(
            export_rows(feedback),
            headers={"Content-Disposition": attachment_disposition(request.accepted_renderer.format)},
        )
