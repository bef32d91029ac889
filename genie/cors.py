"""Cross-origin access to the API: one rule, for the Django views and the SSE relay.

Publishable keys are the browser's credential, and each lists the origins of the pages
that may use it (``AccessToken.allowed_origins``). The rule, in ``cors_allowed``:

- outside the API (``/api/``, and seed 002's ``/chat``: ``CORS_URLS_REGEX``) there is no CORS at all;
- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``; a browser sends no
  credentials with it, so it cannot tell which key follows) is answered for an origin
  that some usable publishable key, of any team, lists;
- an actual request is answered when its bearer key is a usable publishable key that
  lists its ``Origin``;
- credentials never cross origins: no ``Access-Control-Allow-Credentials``, so a
  browser neither sends the admin cookie cross-origin nor lets a page read the answer.

A publishable key sent with an ``Origin`` it does not list is refused 403
``origin_not_allowed`` where credentials are checked (``genie.auth`` for the views,
``runs.sse`` for the relay). Requests without ``Origin`` (servers) are not concerned.

The two edges: Django views get their headers from django-cors-headers' middleware,
which asks ``check_request_enabled`` (``allow_django_request`` below); the SSE relay, a
plain ASGI app that no middleware wraps, asks ``asgi_cors``. Both send the headers,
methods and max age of the library's settings (``CORS_*`` in ``genie.settings``).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import redis
from channels.db import database_sync_to_async
from corsheaders.conf import conf
from corsheaders.middleware import CorsMiddleware as LibraryCorsMiddleware
from corsheaders.signals import check_request_enabled
from django.conf import settings
from django.core.cache import cache
from django.dispatch import receiver
from django.http import HttpRequest

from genie.auth import Caller, parse_bearer
from genie.models import AccessToken

logger = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443}
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
CACHE_KEY = "genie-cors:origin:{}"
PUBLISHABLE_PREFIX = AccessToken.KEY_PREFIXES[AccessToken.Kind.PUBLISHABLE]
Headers = list[tuple[bytes, bytes]]  # an ASGI response's headers


# --- origins ---------------------------------------------------------------------------


def normalize_origin(value: str) -> str:
    """``value`` as a browser writes it in ``Origin``: ``scheme://host[:port]`` with the
    scheme and host in lower case and no default port.

    Raises ValueError, saying why, for anything else: another scheme, a path (a trailing
    slash too), a query or fragment, user info, a wildcard, ``null``, an invalid port.
    Internationalised host names are given in their ASCII (punycode) form, as browsers send them.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an origin: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise ValueError(f"{value!r} is not an origin: write it as http(s)://host[:port].")
    if value.lower() != f"{scheme}://{parts.netloc.lower()}":
        raise ValueError(f"{value!r} is not an origin: no path (not even a trailing slash), query or fragment.")
    if "@" in parts.netloc:
        raise ValueError(f"{value!r} is not an origin: no user name or password.")
    host = parts.hostname or ""
    if ":" in host:
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an origin: {exc}.") from exc
    elif not HOST_NAME.fullmatch(host):
        raise ValueError(f"{value!r} is not an origin: {host!r} is not a host name (no wildcards; punycode for IDNs).")
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize_origins(values: Iterable[str]) -> list[str]:
    """Each origin normalised, duplicates dropped, order kept; ValueError for a bad one."""
    return list(dict.fromkeys(normalize_origin(value) for value in values))


def is_canonical_origin(origin: str) -> bool:
    try:
        return normalize_origin(origin) == origin
    except ValueError:
        return False


# --- the rule --------------------------------------------------------------------------


def cache_key(origin: str) -> str:
    return CACHE_KEY.format(hashlib.sha256(origin.encode()).hexdigest()[:32])


def origin_is_listed(origin: str) -> bool:
    """Whether a usable publishable key, of any team, lists ``origin`` (the preflight rule).

    Cached in the Django cache (Redis) for GENIE_CORS_CACHE_SECONDS; a miss is one query.
    A new key forgets its origins' entries when it is committed (``forget_origins``); a
    revoked key's origin may still pass a preflight until its entry expires, which grants
    nothing: the request that follows is checked against its own key.
    """
    key = cache_key(origin)
    try:
        cached = cache.get(key)
    except redis.RedisError:
        logger.warning("CORS: the cache is unavailable, asking the database")
        cached = None
    if cached is not None:
        return cached
    listed = AccessToken.objects.usable().listing_origin(origin).exists()
    with contextlib.suppress(redis.RedisError):
        cache.set(key, listed, settings.GENIE_CORS_CACHE_SECONDS)
    return listed


def forget_origins(origins: Iterable[str]) -> None:
    """Drop the cached preflight answers for ``origins`` (after a key listing them changed)."""
    keys = [cache_key(origin) for origin in origins]
    if not keys:
        return
    try:
        cache.delete_many(keys)
    except redis.RedisError:
        logger.warning("CORS: could not clear cached origins; they expire in %ss", settings.GENIE_CORS_CACHE_SECONDS)


def publishable_key(authorization: str | None) -> AccessToken | None:
    """The usable publishable key an ``Authorization: Bearer`` header carries, or None.

    One query by the key's unique prefix; none at all for other kinds of key, which
    their prefix tells apart.
    """
    key = parse_bearer(authorization)
    if not key or not key.startswith(PUBLISHABLE_PREFIX):
        return None
    token = (
        AccessToken.objects.usable()
        .filter(kind=AccessToken.Kind.PUBLISHABLE, prefix=key[: AccessToken.LOOKUP_LENGTH])
        .first()
    )
    return token if token is not None and token.matches(key) else None


def is_preflight(method: str, request_method: str | bytes | None) -> bool:
    return method == "OPTIONS" and bool(request_method)


def cors_allowed(*, path: str, origin: str | None, preflight: bool, key: Callable[[], AccessToken | None]) -> bool:
    """The rule (see the module docstring). ``key`` returns the request's bearer key; it is
    called only for an actual request from an origin that could be listed."""
    if not re.match(settings.CORS_URLS_REGEX, path) or not origin or not is_canonical_origin(origin):
        return False
    if preflight:
        return origin_is_listed(origin)
    token = key()
    return token is not None and token.kind == AccessToken.Kind.PUBLISHABLE and origin in token.allowed_origins


# --- the Django edge: django-cors-headers ------------------------------------------------


class CorsMiddleware(LibraryCorsMiddleware):
    """django-cors-headers' middleware, run synchronously.

    Under ASGI Django runs an async-capable middleware on the event loop, where the rule's
    query (a preflight's origin, a non-DRF view's key) is not allowed. Not async-capable,
    it runs on the request's sync thread, as the views do.
    """

    async_capable = False


def key_of_request(request: HttpRequest) -> AccessToken | None:
    """The bearer key of a Django request. DRF leaves the caller it authenticated on the
    request (``request.auth``), so a DRF view costs no second lookup."""
    if hasattr(request, "auth"):
        return request.auth.token if isinstance(request.auth, Caller) else None
    return publishable_key(request.headers.get("authorization"))


@receiver(check_request_enabled, dispatch_uid="genie.cors.allow_django_request")
def allow_django_request(sender: object, request: HttpRequest, **kwargs: Any) -> bool:
    """django-cors-headers asks this before adding the CORS headers to a response."""
    return cors_allowed(
        path=request.path_info,
        origin=request.headers.get("origin"),
        preflight=is_preflight(request.method or "", request.headers.get("access-control-request-method")),
        key=partial(key_of_request, request),
    )


# --- the ASGI edge: the SSE relay ----------------------------------------------------------


@dataclass(frozen=True)
class AsgiCors:
    """What the rule says about one ASGI request: whether it is a preflight (to be answered
    at once, 204) and the headers every response to it carries."""

    preflight: bool
    headers: Headers = field(default_factory=list)


def response_headers(*, origin: str, allowed: bool, preflight: bool) -> Headers:
    """The headers django-cors-headers would add, for an ASGI response."""
    headers = [(b"vary", b"Origin")]
    if not allowed:
        return headers
    headers.append((b"access-control-allow-origin", origin.encode()))
    if conf.CORS_EXPOSE_HEADERS:
        headers.append((b"access-control-expose-headers", ", ".join(conf.CORS_EXPOSE_HEADERS).encode()))
    if preflight:
        headers.append((b"access-control-allow-headers", ", ".join(conf.CORS_ALLOW_HEADERS).encode()))
        headers.append((b"access-control-allow-methods", ", ".join(conf.CORS_ALLOW_METHODS).encode()))
        if conf.CORS_PREFLIGHT_MAX_AGE:
            headers.append((b"access-control-max-age", str(conf.CORS_PREFLIGHT_MAX_AGE).encode()))
    return headers


async def asgi_cors(scope: dict[str, Any]) -> AsgiCors:
    """The rule for a plain ASGI app. Its database work (at most one indexed query, and only
    for a browser's request) runs on the executor's threads; none without an Origin."""
    headers = dict(scope["headers"])
    origin = headers.get(b"origin", b"").decode("latin-1")
    preflight = is_preflight(scope["method"], headers.get(b"access-control-request-method"))
    if not origin:
        return AsgiCors(preflight=preflight, headers=[(b"vary", b"Origin")])
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    allowed = await database_sync_to_async(cors_allowed, thread_sensitive=False)(
        path=scope["path"], origin=origin, preflight=preflight, key=partial(publishable_key, authorization)
    )
    return AsgiCors(preflight=preflight, headers=response_headers(origin=origin, allowed=allowed, preflight=preflight))
