from __future__ import annotations

import redis
from django.db import connection
from django.http import HttpRequest, JsonResponse

from runs.events import redis_client


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
