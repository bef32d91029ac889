"""Writes for teams and credentials."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from genie.cors import forget_origins
from genie.models import AccessToken, Member, Team

DEFAULT_TEAM_SLUG = "default"


class FirstRunOver(Exception):
    """The first account exists already: the first-run form makes no other."""


@transaction.atomic
def create_access_token(
    *,
    team: Team,
    kind: str,
    name: str = "",
    user: AbstractBaseUser | None = None,
    expires_at: datetime | None = None,
    allowed_origins: Sequence[str] = (),
) -> tuple[AccessToken, str]:
    """Create a token and return it with its key; the key is never retrievable again.

    ``allowed_origins`` (publishable keys only) are normalised origins; the cached
    preflight answers for them are dropped once the key is committed.
    """
    if allowed_origins and kind != AccessToken.Kind.PUBLISHABLE:
        raise ValueError("Only publishable keys have allowed origins.")
    key = AccessToken.new_key(kind)
    token = AccessToken(
        team=team, kind=kind, name=name, user=user, expires_at=expires_at, allowed_origins=list(allowed_origins)
    )
    token.set_key(key)
    token.save()
    if token.allowed_origins:
        transaction.on_commit(partial(forget_origins, token.allowed_origins))
    return token, key


def default_team() -> Team:
    """The team created by the data migration (chat 0002)."""
    team, _ = Team.objects.get_or_create(slug=DEFAULT_TEAM_SLUG, defaults={"name": "Default team"})
    return team


@transaction.atomic
def add_member(*, user: AbstractBaseUser, team: Team) -> Member:
    member, _ = Member.objects.update_or_create(user=user, defaults={"team": team})
    return member


@transaction.atomic
def create_first_user(*, username: str, password: str, email: str = "") -> AbstractBaseUser:
    """The first account of a fresh install: a superuser and staff, a member of the default
    team. Raises ``FirstRunOver`` once any user exists. Race-safe: the check and the insert
    run under a lock of the default team's row, so two first-run forms sent at once make
    one account (SQLite's writers are serialised anyway: IMMEDIATE transactions)."""
    team = default_team()
    Team.objects.select_for_update().filter(pk=team.pk).first()
    users = get_user_model().objects
    if users.exists():
        raise FirstRunOver
    user = users.create_superuser(username=username, email=email, password=password)
    add_member(user=user, team=team)
    return user
