"""Rate limits (DRF throttling on the Redis cache), read at call time from GENIE_RATE_*:

- a secret key, a personal token or a signed-in user: one bucket per credential
  (GENIE_RATE_PER_KEY);
- a publishable key is every visitor of a site at once, so a bucket per credential let a
  few visitors lock out the whole widget: each visitor (client IP) has its own bucket
  (GENIE_RATE_PUBLISHABLE_IP), under a ceiling for the whole key far above one visitor's
  (GENIE_RATE_PUBLISHABLE_KEY). The visitor is its IP, not its session secret: the secret
  is not checked yet when the throttles run, and a client could send a new one each time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

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
        if not isinstance(caller, Caller) or caller.is_publishable:
            return None
        ident = f"token:{caller.token.pk}" if caller.token is not None else f"user:{caller.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class PublishableKeyRateThrottle(FailOpenThrottle):
    """The ceiling of a publishable key, all its visitors together (see ``PublishableRateThrottle``)."""

    scope = "publishable-key"
    setting_name = "GENIE_RATE_PUBLISHABLE_KEY"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        caller = request.auth
        if not isinstance(caller, Caller) or not caller.is_publishable:
            return None
        return self.cache_format % {"scope": self.scope, "ident": f"token:{caller.token.pk}"}


class PublishableIPRateThrottle(FailOpenThrottle):
    """One visitor of publishable keys: its client IP (see ``PublishableRateThrottle``)."""

    scope = "publishable-ip"
    setting_name = "GENIE_RATE_PUBLISHABLE_IP"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        caller = request.auth
        if not isinstance(caller, Caller) or not caller.is_publishable:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PublishableRateThrottle(BaseThrottle):
    """A publishable key's request: the visitor's bucket, then the key's ceiling. One class
    so that the ceiling counts only what a visitor's bucket let through (DRF asks every
    throttle of a view, and each that allows counts the request: a visitor hammering past
    its own limit would otherwise use up the whole site's)."""

    def __init__(self) -> None:
        self.refused_by: SimpleRateThrottle | None = None

    def allow_request(self, request: Request, view: object) -> bool:
        for throttle in (PublishableIPRateThrottle(), PublishableKeyRateThrottle()):
            if not throttle.allow_request(request, view):
                self.refused_by = throttle
                return False
        return True

    def wait(self) -> float | None:
        return self.refused_by.wait() if self.refused_by is not None else None


class FailedAuthThrottle(FailOpenThrottle):
    """Failed sign-ins and unknown or revoked bearer keys, per client IP
    (GENIE_RATE_AUTH_FAILURES): it counts failures, not requests (``auth_failure_wait``,
    ``record_auth_failure``), so a guesser is held back and a good client never is."""

    scope = "auth-failures"
    setting_name = "GENIE_RATE_AUTH_FAILURES"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def auth_failure_wait(request: Request) -> float | None:
    """The seconds this client must wait before its credentials are looked at again
    (it failed GENIE_RATE_AUTH_FAILURES times in the window), or None."""
    throttle = FailedAuthThrottle()
    if throttle.rate is None:
        return None
    try:
        throttle.key = throttle.get_cache_key(request, None)
        throttle.history = throttle.cache.get(throttle.key, [])
    except Exception:
        logger.warning("Rate limiting skipped: the cache is unavailable")
        return None
    throttle.now = throttle.timer()
    recent = [moment for moment in throttle.history if moment > throttle.now - throttle.duration]
    if len(recent) < throttle.num_requests:
        return None
    throttle.history = recent
    return throttle.wait() or 1.0


def record_auth_failure(request: Request) -> None:
    """One more failure for this client (counted by ``FailedAuthThrottle``)."""
    FailedAuthThrottle().allow_request(request, None)


@dataclass(frozen=True)
class ThrottleSubject:
    """What DRF's throttles read from a request (``auth`` and ``META``), for requests that
    do not pass through a DRF view: the SSE relay is a plain ASGI app."""

    auth: Caller | None
    META: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        forwarded = self.META.get("HTTP_X_FORWARDED_FOR")
        return {"x-forwarded-for": forwarded} if forwarded else {}


def client_ip(meta: dict[str, str]) -> str:
    """The client's address: ``REMOTE_ADDR``, or ``X-Forwarded-For`` read through exactly
    GENIE_NUM_PROXIES trusted proxies (DRF's rule; a client cannot rotate its own)."""
    return BaseThrottle().get_ident(ThrottleSubject(auth=None, META=meta))


def throttle_wait(*, caller: Caller, meta: dict[str, str]) -> float | None:
    """Apply the API's rate limits (the same classes, rates and counters as every DRF
    view) to a request outside DRF; returns the seconds to wait when it is over a limit."""
    subject = ThrottleSubject(auth=caller, META=meta)
    for throttle_class in api_settings.DEFAULT_THROTTLE_CLASSES:
        throttle = throttle_class()
        if not throttle.allow_request(subject, None):
            return throttle.wait() or 1.0
    return None
