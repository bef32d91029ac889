from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0009_agent_type"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="allow_client_settings",
            field=models.BooleanField(
                default=True,
                help_text="OpenAI clients may add instructions and set temperature, top_p, penalties, seed, stop and "
                "max tokens (capped at this agent's own limit); off: such a request is refused.",
            ),
        ),
    ]
