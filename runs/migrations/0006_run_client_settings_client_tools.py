from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0005_connections"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="client_settings",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="What the client asked of this turn's model calls (see runs.options.ClientSettings).",
            ),
        ),
        migrations.AddField(
            model_name="run",
            name="client_tools",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text="Tools the client offered for this turn ({name, description, input_schema}); it runs them.",
            ),
        ),
    ]
