"""Create a team's secret or publishable API key; prints the key once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from genie.models import AccessToken, Team
from genie.services import create_access_token


class Command(BaseCommand):
    help = "Create a secret (sk_live_) or publishable (pk_live_) API key for a team. The key is shown once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", default="default", help="team slug")
        parser.add_argument("--kind", choices=[AccessToken.Kind.SECRET, AccessToken.Kind.PUBLISHABLE], required=True)
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            raise CommandError(f"No team with slug {options['team']!r}.")
        _, key = create_access_token(team=team, kind=options["kind"], name=options["name"])
        self.stdout.write(key)
