from django.db import migrations, models


def first_seq_is_seq(apps, schema_editor):
    apps.get_model("runs", "RunEvent").objects.update(first_seq=models.F("seq"))


class Migration(migrations.Migration):
    dependencies = [("runs", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="runevent", name="first_seq", field=models.PositiveBigIntegerField(null=True)
        ),
        migrations.AddField(
            model_name="runevent", name="delta_lengths", field=models.JSONField(blank=True, default=list)
        ),
        migrations.RunPython(first_seq_is_seq, migrations.RunPython.noop),
        migrations.AlterField(model_name="runevent", name="first_seq", field=models.PositiveBigIntegerField()),
    ]
