from __future__ import annotations

import redis
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from genie.auth import Caller, IsSecretKey
from genie.connections import redis_client
from genie.models import AccessToken
from genie.serializers import ApiKeyCreatedSerializer, ApiKeyCreateSerializer, ApiKeySerializer
from genie.services import create_access_token


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: the database and Redis answer."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    try:
        redis_client().ping()
        checks["redis"] = "ok"
    except redis.RedisError:
        checks["redis"] = "unavailable"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503)


class TeamConfigViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """A team's configuration objects (agents, connection providers): a secret key only,
    and the team in the serializer's context for its validation."""

    permission_classes = [IsSecretKey]

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        if isinstance(getattr(self.request, "auth", None), Caller):
            context["team"] = self.request.auth.team
        return context


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsSecretKey]
    serializer_class = ApiKeySerializer
    lookup_field = "uuid"

    def get_queryset(self) -> QuerySet[AccessToken]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return AccessToken.objects.none()
        return AccessToken.objects.filter(
            team=self.request.auth.team, kind__in=[AccessToken.Kind.SECRET, AccessToken.Kind.PUBLISHABLE]
        ).order_by("-created_at")

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request) -> Response:
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, key = create_access_token(team=request.auth.team, **data.validated_data)
        return Response({**ApiKeySerializer(token).data, "key": key}, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: OpenApiResponse(description="Revoked.")})
    def destroy(self, request: Request, uuid: str) -> Response:
        self.get_object().revoke()
        return Response(status=status.HTTP_204_NO_CONTENT)
