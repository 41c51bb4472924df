"""The crash-recovery state in the open, and the systems named as connections name them.

- `Coupling.reserved_at`: a pending coupling without an error was a reservation whose write may have landed; its
  recovery window started at `created_at` (reset when a deleted partner was restored). It now says so itself.
- `AmbiguousMatch.side`: "bc" becomes "business_central" (`connectors.choices.ConnectionKind`).
"""

from django.db import migrations, models


def reservations_forward(apps, schema_editor):
    # As the old protocol read it, per direction: a reservation is pending with no error in the direction of its
    # write. A pending coupling without a Business Central id is creating that record (Business Central chooses its
    # ids), so its error is the From Dataverse one; with one, it is creating the Dataverse row (To Dataverse). An old
    # error of the other direction does not end a reservation.
    Coupling = apps.get_model("coupling", "Coupling")
    creating_in_bc = models.Q(bc_id__isnull=True, last_error_from_dataverse="")
    creating_in_dataverse = models.Q(bc_id__isnull=False, last_error_to_dataverse="")
    Coupling.objects.filter(creating_in_bc | creating_in_dataverse, pending=True).update(
        reserved_at=models.F("created_at")
    )


def reservations_backward(apps, schema_editor):
    # The old protocol read the reservation time from created_at.
    Coupling = apps.get_model("coupling", "Coupling")
    Coupling.objects.filter(reserved_at__isnull=False).update(created_at=models.F("reserved_at"))


def sides_forward(apps, schema_editor):
    apps.get_model("coupling", "AmbiguousMatch").objects.filter(side="bc").update(side="business_central")


def sides_backward(apps, schema_editor):
    apps.get_model("coupling", "AmbiguousMatch").objects.filter(side="business_central").update(side="bc")


class Migration(migrations.Migration):
    dependencies = [
        ("coupling", "0005_remove_coupling_last_error"),
    ]

    operations = [
        migrations.AddField(
            model_name="coupling",
            name="reserved_at",
            field=models.DateTimeField(
                blank=True,
                help_text="Since when a write creating the partner may have happened (pending only).",
                null=True,
            ),
        ),
        migrations.RunPython(reservations_forward, reservations_backward),
        migrations.AlterField(
            model_name="ambiguousmatch",
            name="side",
            field=models.CharField(
                choices=[("business_central", "Business Central"), ("dataverse", "Dataverse")],
                help_text="The system the record is in.",
                max_length=20,
            ),
        ),
        migrations.RunPython(sides_forward, sides_backward),
    ]
