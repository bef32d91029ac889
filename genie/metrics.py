"""``/metrics`` in the Prometheus formats: the registry the apps add their collectors to
(``runs`` adds its own in ``RunsConfig.ready``), and who may scrape it.

Not public: with ``GENIE_METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer
<token>``; without it, only a request from this machine's loopback that no proxy
forwarded (no ``X-Forwarded-For`` or ``Forwarded`` header: a proxy on the same machine
connects from loopback too) may read it.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from prometheus_client import CollectorRegistry
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from genie.auth import parse_bearer
from genie.exceptions import GenieError

# Only the collectors the apps register: no process figures, which would describe
# whichever process a proxy sent the scrape to. No describe at registration: collectors
# read the stores only when scraped.
registry = CollectorRegistry(auto_describe=False)

SCRAPER = "metrics-scraper"  # request.auth of a scrape that sent the metrics token


class MetricsForbidden(GenieError):
    status_code = 403
    default_code = "metrics_forbidden"
    default_detail = "Metrics are served to loopback only; set GENIE_METRICS_TOKEN to scrape from elsewhere."


class MetricsTokenAuthentication(authentication.BaseAuthentication):
    """The scraper's bearer token, when GENIE_METRICS_TOKEN is set (compared in constant time)."""

    def authenticate(self, request: Request) -> tuple[None, str] | None:
        expected = settings.GENIE_METRICS_TOKEN
        presented = parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        if not expected or presented is None:
            return None
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise exceptions.AuthenticationFailed("Invalid metrics token.")
        return None, SCRAPER

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="genie-metrics"'


class CanScrapeMetrics(permissions.BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.GENIE_METRICS_TOKEN:
            return request.auth == SCRAPER  # else 401 with WWW-Authenticate
        if is_local_request(request.META):
            return True
        raise MetricsForbidden()


def is_local_request(meta: dict[str, str]) -> bool:
    """From this machine, not relayed by a proxy."""
    if meta.get("HTTP_X_FORWARDED_FOR") or meta.get("HTTP_FORWARDED"):
        return False
    try:
        return ipaddress.ip_address(meta.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False
