"""The process's connections to the shared services the apps use (Redis).

Lives in the project package so that every app, and the health check, share one client
without ``genie`` importing an app."""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def redis_client() -> redis.Redis:
    """The process's sync client (thread-safe connection pool)."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )
