"""Writes for teams and credentials."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from genie.models import AccessToken, Member, Team

DEFAULT_TEAM_SLUG = "default"


@transaction.atomic
def create_access_token(
    *,
    team: Team,
    kind: str,
    name: str = "",
    user: AbstractBaseUser | None = None,
    expires_at: datetime | None = None,
) -> tuple[AccessToken, str]:
    """Create a token and return it with its key; the key is never retrievable again."""
    key = AccessToken.new_key(kind)
    token = AccessToken(team=team, kind=kind, name=name, user=user, expires_at=expires_at)
    token.set_key(key)
    token.save()
    return token, key


def default_team() -> Team:
    """The team created by the data migration (chat 0002)."""
    team, _ = Team.objects.get_or_create(slug=DEFAULT_TEAM_SLUG, defaults={"name": "Default team"})
    return team


@transaction.atomic
def add_member(*, user: AbstractBaseUser, team: Team) -> Member:
    member, _ = Member.objects.update_or_create(user=user, defaults={"team": team})
    return member
