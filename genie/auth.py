"""The one auth path: who is calling, for which team, and with what reach.

Both DRF views and the SSE relay resolve credentials to a ``Caller`` here: a bearer key
(personal token, secret or publishable key) or a Django session cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone
from rest_framework import authentication, exceptions, permissions, status

from genie.models import AccessToken, Member, Team

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from rest_framework.request import Request

LAST_USED_RESOLUTION = timedelta(minutes=1)


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


def resolve_bearer_key(key: str, *, session_secret: str | None = None) -> Caller | None:
    """Return the caller for a raw bearer key, or None when it is unknown, revoked or expired.

    One indexed query (plus at most one UPDATE a minute for ``last_used_at``).
    """
    if len(key) < AccessToken.LOOKUP_LENGTH:
        return None
    token = (
        AccessToken.objects.usable()
        .select_related("team", "user", "user__member")
        .filter(prefix=key[: AccessToken.LOOKUP_LENGTH])
        .first()
    )
    if token is None or not token.matches(key):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    kind = "user" if token.kind == AccessToken.Kind.PERSONAL else token.kind
    return Caller(team=token.team, kind=kind, user=token.user, token=token, session_secret=session_secret)


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
        caller = resolve_bearer_key(key, session_secret=request.META.get("HTTP_X_SESSION_SECRET"))
        if caller is None:
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
