"""Create the five default mappings on a new installation (BC creates them when the integration is set up)."""

from django.db import migrations


def create_defaults(apps, schema_editor):
    from mappings.defaults import create_default_mappings

    create_default_mappings(
        table_model=apps.get_model("mappings", "TableMapping"), field_model=apps.get_model("mappings", "FieldMapping")
    )


class Migration(migrations.Migration):
    dependencies = [("mappings", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
