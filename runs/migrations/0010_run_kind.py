# A compaction is a run too (POST sessions/{s}/compact, in the worker): it has no messages.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0014_agent_secrets_encrypted"),
        ("runs", "0009_toolcall_waits_for_result"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="kind",
            field=models.CharField(
                choices=[("turn", "Turn"), ("compaction", "Compaction")], default="turn", max_length=20
            ),
        ),
        migrations.AlterField(
            model_name="run",
            name="user_message",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="chat.message",
            ),
        ),
        migrations.AlterField(
            model_name="run",
            name="agent_message",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="run",
                to="chat.message",
            ),
        ),
    ]
