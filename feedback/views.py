from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.models import Message, Session
from feedback import services
from feedback.models import Feedback
from feedback.serializers import FeedbackInputSerializer, FeedbackSerializer
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
