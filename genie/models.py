"""Teams, their members and the credentials that act for them."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
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
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
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
