from __future__ import annotations

import redis
from django.contrib.auth import get_user_model, login
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from prometheus_client.exposition import choose_encoder
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from genie.auth import Caller, IsSecretKey
from genie.connections import redis_client
from genie.forms import FirstAccountForm
from genie.metrics import CanScrapeMetrics, MetricsTokenAuthentication, registry
from genie.models import AccessToken
from genie.schema import error_response
from genie.serializers import ApiKeyCreatedSerializer, ApiKeyCreateSerializer, ApiKeySerializer
from genie.services import FirstRunOver, create_access_token, create_first_user


def dependency_checks() -> dict[str, str]:
    """Whether PostgreSQL and Redis answer (one query, one PING)."""
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
    return checks


def migrations_check() -> str:
    """'ok' when every migration of this code is applied, 'pending' when some are not (the
    one-shot migrate has not run yet): reads the migration files and one table."""
    try:
        executor = MigrationExecutor(connection)
        return "pending" if executor.migration_plan(executor.loader.graph.leaf_nodes()) else "ok"
    except DatabaseError:
        return "unavailable"


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: the database and Redis answer."""
    checks = dependency_checks()
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503)


class ErrorsAsJSON(BaseContentNegotiation):
    """Probes and scrapers send any Accept header: never 406. A probe's answer and every
    error are JSON; the metrics exposition picks its own format (``choose_encoder``)."""

    def select_parser(self, request: Request, parsers: list) -> None:
        return None  # GET only

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class OperationsView(APIView):
    """The endpoints orchestrators and monitoring call, beside the API: no API
    credentials, no rate limit."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes: list = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = ErrorsAsJSON


LIVENESS = inline_serializer("Liveness", fields={"status": serializers.ChoiceField(choices=["ok"])})
READINESS = inline_serializer(
    "Readiness",
    fields={
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": inline_serializer(
            "ReadinessChecks",
            fields={
                "database": serializers.ChoiceField(choices=["ok", "unavailable"]),
                "redis": serializers.ChoiceField(choices=["ok", "unavailable"]),
                "migrations": serializers.ChoiceField(choices=["ok", "pending", "unavailable"]),
            },
        ),
    },
)


class LivenessView(OperationsView):
    """For an orchestrator's liveness probe: restart the process when this fails."""

    @extend_schema(
        operation_id="livez",
        auth=[],
        tags=["operations"],
        summary="The process is up (no dependency is checked)",
        responses={200: LIVENESS},
    )
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadinessView(OperationsView):
    """For a readiness probe or a load balancer: send traffic only while this is 200."""

    @extend_schema(
        operation_id="readyz",
        auth=[],
        tags=["operations"],
        summary="Ready for traffic: PostgreSQL and Redis answer, every migration is applied",
        responses={
            200: READINESS,
            503: OpenApiResponse(READINESS, description="Not ready: `checks` says which dependency is not."),
        },
    )
    def get(self, request: Request) -> Response:
        checks = dependency_checks()
        checks["migrations"] = migrations_check() if checks["database"] == "ok" else "unavailable"
        ready = all(value == "ok" for value in checks.values())
        return Response(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
        )


class MetricsView(OperationsView):
    """For Prometheus: any process answers for the whole deployment (runs.metrics)."""

    authentication_classes = [MetricsTokenAuthentication]
    permission_classes = [CanScrapeMetrics]

    @extend_schema(
        operation_id="metrics",
        tags=["operations"],
        summary="Prometheus metrics of the whole deployment",
        auth=[{"metricsToken": []}, {}],
        description="The Prometheus text format (or OpenMetrics when the scraper asks for it). Needs "
        "`Authorization: Bearer <GENIE_METRICS_TOKEN>` when that setting is set; otherwise answers "
        "loopback requests that no proxy forwarded, and 403 `metrics_forbidden` to any other.",
        responses={
            (200, "text/plain"): OpenApiTypes.STR,
            (200, "application/openmetrics-text"): OpenApiTypes.STR,
            401: error_response(
                "GENIE_METRICS_TOKEN is set and the request did not send it "
                "(`not_authenticated`) or sent another (`authentication_failed`)."
            ),
            403: error_response(
                "No GENIE_METRICS_TOKEN is set and the request is not a local one (`metrics_forbidden`)."
            ),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
        return HttpResponse(encoder(registry), content_type=content_type)


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


@require_POST
@csrf_protect
def first_account(request: HttpRequest) -> HttpResponse:
    """``POST /setup/``: the first run's account, offered by the sign-in page while no user
    exists (Open WebUI's pattern), signed in at once. 404 once any user exists; a bad form
    is the sign-in page again with its errors (400)."""
    if get_user_model().objects.exists():
        raise Http404("Genie has its first account already.")
    form = FirstAccountForm(request.POST)
    if not form.is_valid():
        return render(request, "registration/login.html", {"setup_form": form}, status=400)
    try:
        user = create_first_user(username=form.cleaned_data["username"], password=form.cleaned_data["password1"])
    except FirstRunOver as exc:  # another first-run form won the race
        raise Http404("Genie has its first account already.") from exc
    login(request, user)
    return redirect("chat-page")
