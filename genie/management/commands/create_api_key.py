"""Create a team's secret or publishable API key; prints the key once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from genie.cors import normalize_origins
from genie.models import AccessToken, Team
from genie.services import create_access_token


class Command(BaseCommand):
    help = "Create a secret (sk_live_) or publishable (pk_live_) API key for a team. The key is shown once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", default="default", help="team slug")
        parser.add_argument("--kind", choices=[AccessToken.Kind.SECRET, AccessToken.Kind.PUBLISHABLE], required=True)
        parser.add_argument("--name", default="")
        parser.add_argument(
            "--allowed-origin",
            action="append",
            default=[],
            dest="allowed_origins",
            metavar="ORIGIN",
            help="publishable keys: an origin (scheme://host[:port]) whose pages may use the key; repeatable",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            raise CommandError(f"No team with slug {options['team']!r}.")
        if options["allowed_origins"] and options["kind"] != AccessToken.Kind.PUBLISHABLE:
            raise CommandError("--allowed-origin is for publishable keys: a secret key stays on servers.")
        try:
            origins = normalize_origins(options["allowed_origins"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        _, key = create_access_token(team=team, kind=options["kind"], name=options["name"], allowed_origins=origins)
        self.stdout.write(key)
