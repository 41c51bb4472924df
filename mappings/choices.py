from typing import Literal

from django.db import models

from connectors.choices import ConnectionKind

# The vocabulary of the two systems. `Side` is the short key a mapping's per-system fields are named by
# (bc_entity_set, dataverse_field, bc_watermark); ConnectionKind is how connections, webhook subscriptions and
# ambiguous matches store the same two systems. SIDE_KIND goes from one to the other; labels come from ConnectionKind.
Side = Literal["bc", "dataverse"]
BC: Side = "bc"
DATAVERSE: Side = "dataverse"
SIDE_KIND: dict[str, ConnectionKind] = {BC: ConnectionKind.BUSINESS_CENTRAL, DATAVERSE: ConnectionKind.DATAVERSE}
SIDE_LABEL: dict[str, str] = {side: kind.label for side, kind in SIDE_KIND.items()}


class Direction(models.TextChoices):
    BIDIRECTIONAL = "bidirectional", "Bidirectional"
    TO_DATAVERSE = "to_dataverse", "To Dataverse"
    FROM_DATAVERSE = "from_dataverse", "From Dataverse"


class UpdateConflictResolution(models.TextChoices):
    NONE = "", "None (report the conflict)"
    SEND_TO_DATAVERSE = "send_to_dataverse", "Business Central wins (send update to Dataverse)"
    GET_FROM_DATAVERSE = "get_from_dataverse", "Dataverse wins (get update from Dataverse)"


class DeletionConflictResolution(models.TextChoices):
    NONE = "", "None (report the conflict)"
    RESTORE_RECORDS = "restore_records", "Restore records"
    REMOVE_COUPLING = "remove_coupling", "Remove coupling"


# The skip policy (TableMapping.skip_after_failures) names error classes by jobs.choices.ErrorClass's values; the
# mappings layer sits below jobs, so the names are repeated here (tests/mappings/test_skip_policy.py keeps them equal).
# Transient errors (throttling, timeouts, 5xx, unknown outcome) are never skipped: they are retried instead.
TRANSIENT_ERROR_CLASSES = ("transient", "throttled")
PERMANENT_ERROR_CLASSES = (
    "authentication",
    "permission",
    "validation",
    "not_found",
    "conflict",
    "deletion_conflict",
    "missing_dependency",
    "ambiguous_match",
    "internal",
)
DEFAULT_SKIP_AFTER = 2  # identical failures in a row, as Business Central


class DeletionPolicy(models.TextChoices):
    """What a run does with the other record when a coupled record was deleted in its own system."""

    REPORT = "", "Do nothing (report the deletion)"
    PROPAGATE = "propagate", "Delete the other record too"
    UNCOUPLE = "uncouple", "Uncouple and keep the other record"
    RESTORE = "restore", "Restore the deleted record from the other one"
