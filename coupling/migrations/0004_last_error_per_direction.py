from django.db import migrations, models
from django.db.models import F, Q


def split_last_error(apps, schema_editor):
    """The old single error belongs to the direction whose failure came last (both, if that cannot be told)."""
    Coupling = apps.get_model("coupling", "Coupling")
    failed = Coupling.objects.exclude(last_error="")
    to_failed = Q(last_result_to_dataverse="failure")
    from_failed = Q(last_result_from_dataverse="failure")
    from_later = Q(last_job_from_dataverse__gt=F("last_job_to_dataverse"))
    to_later = Q(last_job_to_dataverse__gt=F("last_job_from_dataverse"))
    failed.filter(to_failed).exclude(from_failed & from_later).update(last_error_to_dataverse=F("last_error"))
    failed.filter(from_failed).exclude(to_failed & to_later).update(last_error_from_dataverse=F("last_error"))


def join_last_error(apps, schema_editor):
    Coupling = apps.get_model("coupling", "Coupling")
    Coupling.objects.exclude(last_error_to_dataverse="").update(last_error=F("last_error_to_dataverse"))
    Coupling.objects.filter(last_error="").exclude(last_error_from_dataverse="").update(
        last_error=F("last_error_from_dataverse")
    )


class Migration(migrations.Migration):
    """The old column is removed by the next migration, apart from this data step (PostgreSQL prefers them apart)."""

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
    ]
