"""Give every existing mapping (the five defaults on a new installation) its default schedule."""

from django.db import migrations


def create_schedules(apps, schema_editor):
    from jobs.scheduling.defaults import create_missing_schedules

    create_missing_schedules(
        schedule_model=apps.get_model("jobs", "Schedule"), mapping_model=apps.get_model("mappings", "TableMapping")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_schedules_and_webhook_subscriptions"),
        ("mappings", "0002_create_default_mappings"),
    ]

    operations = [migrations.RunPython(create_schedules, migrations.RunPython.noop)]
