from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0014_agent_secrets_encrypted"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="generate_titles",
            field=models.BooleanField(
                default=True,
                help_text="A new session's blank title is written by the model after its first reply (a second, "
                "short model call, on the workers' titles queue); off: sessions stay untitled until renamed.",
            ),
        ),
    ]
