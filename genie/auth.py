"""The one auth path: who is calling, for which team, and with what reach.

Both DRF views and the SSE relay resolve credentials to a ``Caller`` here: a bearer key
(personal token, secret or publishable key) or a Django session cookie.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions, status

from genie.connections import redis_client
from genie.models import AccessToken, Member, Team

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from rest_framework.request import Request

logger = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(minutes=1)
AUTH_EPOCH_KEY = "genie:auth:epoch"


class OriginNotAllowed(exceptions.APIException):
    """A publishable key sent from a page whose origin the key does not list. (Not a
    ``GenieError``: ``genie.exceptions`` imports DRF's views, which import this module.)"""

    status_code = status.HTTP_403_FORBIDDEN
    default_code = "origin_not_allowed"
    default_detail = "This publishable key may not be used from this origin; add it to the key's allowed_origins."


@dataclass(frozen=True)
class Caller:
    """The resolved identity of a request.

    ``kind`` is ``user`` (personal token or cookie: sees only its own sessions),
    ``secret`` (the whole team) or ``publishable`` (only sessions it created, with
    their client secret).
    """

    team: Team
    kind: str
    user: AbstractBaseUser | None = None
    token: AccessToken | None = None
    session_secret: str | None = None

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_secret(self) -> bool:
        return self.kind == "secret"

    @property
    def is_publishable(self) -> bool:
        return self.kind == "publishable"

    @property
    def lacks_session_secret(self) -> bool:
        """A publishable key sent without ``X-Session-Secret``: it reaches no session."""
        return self.is_publishable and not self.session_secret

    @property
    def label(self) -> str:
        """Who acted, for records such as a tool call's ``decided_by``: a user by its
        public id, a key by its kind and prefix (never the key)."""
        if self.user is not None and hasattr(self.user, "member"):
            return f"user:{self.user.member.uuid}"
        if self.token is not None:
            return f"{self.kind}_key:{self.token.prefix}"
        return self.kind

    def allows_origin(self, origin: str | None) -> bool:
        """A publishable key works from a browser only on the origins it lists."""
        return self.token is None or self.token.allows_origin(origin)


def actor_names(labels: Iterable[str]) -> dict[str, str]:
    """Who each ``Caller.label`` names, in words for a reviewer: a user by its username
    (``demo``), a key by its kind and prefix (``secret key sk_live_AbC…``); a label this
    cannot read stays as it is. One query, for the users among them."""
    labels = set(labels)
    member_ids = {}
    for label in labels:
        kind, _, rest = label.partition(":")
        if kind == "user":
            with contextlib.suppress(ValueError):
                member_ids[label] = uuid.UUID(rest)
    members = Member.objects.select_related("user").filter(uuid__in=member_ids.values())
    usernames = {member.uuid: member.user.get_username() for member in members}
    names = {}
    for label in labels:
        kind, _, rest = label.partition(":")
        if label in member_ids:
            names[label] = usernames.get(member_ids[label], label)
        elif kind.endswith("_key") and rest:
            names[label] = f"{kind.removesuffix('_key')} key {rest}…"
        else:
            names[label] = label
    return names


def resolve_bearer_key(key: str, *, session_secret: str | None = None, epoch: str | None = None) -> Caller | None:
    """Return the caller for a raw bearer key, or None when it is unknown, revoked or expired.

    One indexed query (plus at most one UPDATE a minute for ``last_used_at``). With the
    revocation ``epoch`` (``auth_epoch()``, read before this call) a key resolved under the
    same epoch is served from this process's ``bearer_keys`` without a query.
    """
    if len(key) < AccessToken.LOOKUP_LENGTH:
        return None
    digest = AccessToken.hash_key(key)
    caller = bearer_keys.get(digest, epoch) if epoch is not None else None
    if caller is None:
        token = (
            AccessToken.objects.usable()
            .select_related("team", "user", "user__member")
            .filter(prefix=key[: AccessToken.LOOKUP_LENGTH])
            .first()
        )
        if token is None or not token.matches(key):
            return None
        kind = "user" if token.kind == AccessToken.Kind.PERSONAL else token.kind
        caller = Caller(team=token.team, kind=kind, user=token.user, token=token)
        if epoch is not None:
            bearer_keys.put(digest, epoch, caller)
    token = caller.token
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now  # a cached token writes once a minute too
    return replace(caller, session_secret=session_secret)


class BearerKeyCache:
    """Callers of bearer keys resolved by this process, for the SSE relay's stream opens
    (a query per open was the largest part of its cost).

    Revocation takes effect at once: every entry is tagged with the revocation epoch
    (``AUTH_EPOCH_KEY`` in Redis) read *before* its key was looked up, and is served only
    while the epoch read for the request is still that one. Every change that can end or
    narrow a key's reach (a token, user, membership or team saved or deleted: revoked,
    expired early, deactivated, moved, its origins edited) bumps the epoch at once and
    again when its transaction commits (``on_credentials_changed``): the first bump stops
    every process serving the old caller, the second drops what a lookup that read the
    row before the commit cached in between. Without Redis (no epoch can be read) nothing
    is served from here. ``expires_at`` is checked on every hit; entries also expire
    after ``TTL`` seconds, a bound for a change made outside the ORM's signals (a raw SQL
    UPDATE) or while Redis could not be told.
    """

    TTL = 60.0
    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, epoch: str) -> Caller | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        tagged, stored_at, caller = entry
        expires_at = caller.token.expires_at if caller.token is not None else None
        if tagged != epoch or time.monotonic() - stored_at > self.TTL or (expires_at and expires_at <= timezone.now()):
            with self._lock:
                self._entries.pop(digest, None)
            return None
        return caller

    def put(self, digest: str, epoch: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()  # rare: a process sees more live keys than this
            self._entries[digest] = (epoch, time.monotonic(), caller)


bearer_keys = BearerKeyCache()


def auth_epoch() -> str | None:
    """The revocation epoch now ('0' before the first bump), or None when Redis cannot
    say (then ``resolve_bearer_key`` queries the database). One Redis round trip."""
    try:
        value = redis_client().get(AUTH_EPOCH_KEY)
    except redis.RedisError:
        return None
    return value.decode() if value is not None else "0"


def bump_auth_epoch() -> None:
    """Invalidate every process's cached bearer keys (``BearerKeyCache``)."""
    try:
        redis_client().incr(AUTH_EPOCH_KEY)
    except redis.RedisError:
        # The cached callers still expire within BearerKeyCache.TTL.
        logger.warning("Could not bump the auth epoch: Redis is unavailable")


def on_credentials_changed(sender: type, instance: Any, **kwargs: Any) -> None:
    """A token, user, membership or team changed: cached bearer keys are looked up again,
    now and once the change is committed (see ``BearerKeyCache``; a login's
    ``last_login`` write changes no reach)."""
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and set(update_fields) <= {"last_login", "last_used_at"}:
        return
    bump_auth_epoch()
    transaction.on_commit(bump_auth_epoch, using=kwargs.get("using"))


for model in (AccessToken, Member, Team, settings.AUTH_USER_MODEL):
    post_save.connect(on_credentials_changed, sender=model, dispatch_uid=f"auth-epoch-save-{model}")
    post_delete.connect(on_credentials_changed, sender=model, dispatch_uid=f"auth-epoch-delete-{model}")


def caller_for_user(user: AbstractBaseUser) -> Caller | None:
    """The caller of a logged-in Django user (cookie auth), or None without a team."""
    if not user.is_authenticated or not user.is_active:
        return None
    try:
        member = Member.objects.select_related("team").get(user=user)
    except Member.DoesNotExist:
        return None
    return Caller(team=member.team, kind="user", user=user)


def parse_bearer(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; '' for a malformed one."""
    if not header:
        return None
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AbstractBaseUser | None, Caller] | None:
        key = parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        if key is None:
            return None
        from genie.throttles import auth_failure_wait, record_auth_failure  # it imports this module

        # A client that sent too many bad keys waits before any key of its is looked at.
        if (wait := auth_failure_wait(request)) is not None:
            raise exceptions.Throttled(wait)
        # The same per-process cache as a stream open (``BearerKeyCache``): a revoked key is
        # refused at the next request all the same, and a turn's POST saves its slowest query.
        caller = resolve_bearer_key(key, session_secret=request.META.get("HTTP_X_SESSION_SECRET"), epoch=auth_epoch())
        if caller is None:
            record_auth_failure(request)
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.", code="invalid_token")
        if not caller.allows_origin(request.META.get("HTTP_ORIGIN")):
            raise OriginNotAllowed()
        return (caller.user, caller)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="genie"'


class CsrfSessionAuthentication(authentication.SessionAuthentication):
    """Django session cookie; DRF enforces CSRF on unsafe methods for it."""

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, Caller] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        caller = caller_for_user(user)
        if caller is None:
            raise exceptions.PermissionDenied("This user belongs to no team.", code="no_team")
        return (user, caller)


class IsTeamCaller(permissions.BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        if not isinstance(request.auth, Caller):
            raise exceptions.NotAuthenticated()
        return True


class NotPublishable(permissions.BasePermission):
    """Everything but publishable keys (they never list sessions or read configuration)."""

    message = "A publishable key cannot do this."
    code = "publishable_key_forbidden"

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, Caller) and not request.auth.is_publishable


class IsSecretKey(permissions.BasePermission):
    """Team administration (agents, API keys) needs a secret key."""

    message = "This endpoint needs a secret key (sk_live_…)."
    code = "secret_key_required"

    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, Caller) and request.auth.is_secret
