from django.db import migrations, models


def split_last_error(apps, schema_editor):
    """The old single error belongs to the direction(s) whose last result was a failure."""
    Coupling = apps.get_model("coupling", "Coupling")
    failed = Coupling.objects.exclude(last_error="")
    failed.filter(last_result_to_dataverse="failure").update(last_error_to_dataverse=models.F("last_error"))
    failed.filter(last_result_from_dataverse="failure").update(last_error_from_dataverse=models.F("last_error"))


def join_last_error(apps, schema_editor):
    Coupling = apps.get_model("coupling", "Coupling")
    Coupling.objects.exclude(last_error_to_dataverse="").update(last_error=models.F("last_error_to_dataverse"))
    Coupling.objects.filter(last_error="").exclude(last_error_from_dataverse="").update(
        last_error=models.F("last_error_from_dataverse")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("coupling", "0003_ambiguous_matches_plural"),
    ]

    operations = [
        migrations.AddField(
            model_name="coupling",
            name="last_error_to_dataverse",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="coupling",
            name="last_error_from_dataverse",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(split_last_error, join_last_error),
        migrations.RemoveField(
            model_name="coupling",
            name="last_error",
        ),
    ]
