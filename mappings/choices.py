from django.db import models


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
