# A compaction's Idempotency-Key is kept as every write's (genie.idempotency), naming its run.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0015_agent_generate_titles"),
        ("runs", "0010_run_kind"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="compaction",
            name="compaction_idempotency_key_unique_per_session",
        ),
        migrations.RemoveField(
            model_name="compaction",
            name="idempotency_key",
        ),
        migrations.AddField(
            model_name="compaction",
            name="run",
            field=models.OneToOneField(
                blank=True,
                help_text="The compaction run that wrote it (POST sessions/{s}/compact); none for an automatic one.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="compaction",
                to="runs.run",
            ),
        ),
    ]
