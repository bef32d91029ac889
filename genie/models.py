"""Teams, their members and the credentials that act for them."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from django.conf import settings
from django.db import connections, models
from django.db.models.functions import Cast
from django.utils import timezone


class Team(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Member(models.Model):
    """A Django user's place in a team; its uuid is the user's public id in the API."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="member")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.team}"

    @property
    def display_name(self) -> str:
        return self.user.get_full_name() or self.user.get_username()


class AccessTokenQuerySet(models.QuerySet["AccessToken"]):
    def usable(self) -> AccessTokenQuerySet:
        """Not revoked, not expired, and a personal token only while its user is active and
        a member of the token's team: credentials follow membership (a user moved to
        another team or removed from this one loses the token at once)."""
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now),
            ~models.Q(kind=AccessToken.Kind.PERSONAL)
            | models.Q(user__is_active=True, user__member__team=models.F("team")),
        )

    def listing_origin(self, origin: str) -> AccessTokenQuerySet:
        """Publishable keys whose ``allowed_origins`` holds ``origin`` (a normalised origin).

        PostgreSQL looks inside the JSON (``@>``). SQLite cannot, so there it is a text
        match on the quoted origin, exact because an origin holds no quote or backslash.
        """
        keys = self.filter(kind=AccessToken.Kind.PUBLISHABLE)
        if connections[self.db].features.supports_json_field_contains:
            return keys.filter(allowed_origins__contains=[origin])
        return keys.annotate(origins_text=Cast("allowed_origins", models.TextField())).filter(
            origins_text__contains=f'"{origin}"'
        )


class AccessToken(models.Model):
    """A bearer credential. Only a SHA-256 of the key is stored; the key is shown once.

    Keys are 32 random bytes, so a fast hash is enough (no password stretching needed);
    ``prefix`` (the first characters) finds the row without scanning.
    """

    class Kind(models.TextChoices):
        PERSONAL = "personal", "Personal access token"
        SECRET = "secret", "Secret key"
        PUBLISHABLE = "publishable", "Publishable key"

    KEY_PREFIXES = {Kind.PERSONAL: "gp_", Kind.SECRET: "sk_live_", Kind.PUBLISHABLE: "pk_live_"}
    LOOKUP_LENGTH = 16

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="access_tokens")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="access_tokens",
        help_text="Set for personal tokens: the token acts as this user.",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.PERSONAL)
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=LOOKUP_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "Publishable keys: the origins (scheme://host[:port]) of the web pages that may use this key "
            'from a browser, e.g. ["https://shop.example", "http://localhost:5173"].'
        ),
    )

    objects = AccessTokenQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["team", "kind", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind="personal") | models.Q(user__isnull=False),
                name="personal_token_has_user",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.prefix}… ({self.name or 'unnamed'})"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def new_key(cls, kind: str) -> str:
        return cls.KEY_PREFIXES[kind] + secrets.token_urlsafe(32)

    def set_key(self, key: str) -> None:
        self.prefix = key[: self.LOOKUP_LENGTH]
        self.key_hash = self.hash_key(key)

    def matches(self, key: str) -> bool:
        return secrets.compare_digest(self.key_hash, self.hash_key(key))

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a request sent from ``origin`` may use this key.

        A browser names the page's origin in ``Origin``; a publishable key works only
        from the origins it lists. Calls without an Origin (servers) and the other
        kinds of key are not concerned.
        """
        return not origin or self.kind != self.Kind.PUBLISHABLE or origin in self.allowed_origins

    @property
    def is_usable(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    def revoke(self, *, at: datetime | None = None) -> None:
        if self.revoked_at is None:
            self.revoked_at = at or timezone.now()
            self.save(update_fields=["revoked_at", "updated_at"])


class IdempotencyKey(models.Model):
    """The first response to a POST sent with an ``Idempotency-Key`` header.

    Unique per (team, credential, key): a concurrent retry blocks on the unique index
    until the first request commits, then replays its response.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    caller = models.CharField(max_length=100, help_text="The credential (token uuid or user id) that sent it.")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "caller", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return self.key
