"""A default team and its default agent (the embedded local model) exist after migrate."""

from django.conf import settings
from django.db import migrations


def create_defaults(apps, schema_editor):
    Team = apps.get_model("genie", "Team")
    Agent = apps.get_model("chat", "Agent")
    team, _ = Team.objects.get_or_create(slug="default", defaults={"name": "Default team"})
    if not Agent.objects.filter(team=team, is_default=True).exists():
        Agent.objects.get_or_create(
            team=team,
            handle="assistant",
            defaults={
                "name": "Assistant",
                "instructions": "You are a helpful, concise assistant.",
                "provider": settings.GENIE_DEFAULT_PROVIDER,
                "model": settings.GENIE_DEFAULT_MODEL,
                "temperature": 0.2,
                "is_public": True,
                "is_default": True,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial"), ("genie", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
