"""Create a personal access token (creating the user in the team if needed); prints the key once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from genie.models import AccessToken, Member, Team
from genie.services import add_member, create_access_token, default_team


def issue_personal_token(*, username: str, team_slug: str | None, name: str) -> str:
    team = Team.objects.filter(slug=team_slug).first() if team_slug else default_team()
    if team is None:
        raise CommandError(f"No team with slug {team_slug!r}.")
    user, _ = get_user_model().objects.get_or_create(username=username)
    if not Member.objects.filter(user=user).exists():
        add_member(user=user, team=team)
    _, key = create_access_token(team=user.member.team, kind=AccessToken.Kind.PERSONAL, user=user, name=name)
    return key


class Command(BaseCommand):
    help = "Create a personal access token for a user (created if missing). The key is shown once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--team", help="team slug (default: the default team)")
        parser.add_argument("--name", default="cli")

    def handle(self, *args: Any, **options: Any) -> None:
        key = issue_personal_token(username=options["username"], team_slug=options["team"], name=options["name"])
        self.stdout.write(key)
