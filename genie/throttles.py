"""Rate limits per credential, and per client IP for publishable keys (DRF throttling on
the Redis cache). Rates are read at call time from GENIE_RATE_* settings."""

from __future__ import annotations

import logging

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from genie.auth import Caller

logger = logging.getLogger(__name__)


class FailOpenThrottle(SimpleRateThrottle):
    setting_name = ""

    def get_rate(self) -> str | None:
        return getattr(settings, self.setting_name) or None

    def allow_request(self, request: Request, view: object) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("Rate limiting skipped: the cache is unavailable")
            return True


class CredentialRateThrottle(FailOpenThrottle):
    scope = "credential"
    setting_name = "GENIE_RATE_PER_KEY"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        caller = request.auth
        if not isinstance(caller, Caller):
            return None
        ident = f"token:{caller.token.pk}" if caller.token is not None else f"user:{caller.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class PublishableIPRateThrottle(FailOpenThrottle):
    scope = "publishable-ip"
    setting_name = "GENIE_RATE_PUBLISHABLE_IP"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        caller = request.auth
        if not isinstance(caller, Caller) or not caller.is_publishable:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
