from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("coupling", "0004_last_error_per_direction"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="coupling",
            name="last_error",
        ),
    ]
