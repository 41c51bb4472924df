from django.db import models


class ConnectionKind(models.TextChoices):
    BUSINESS_CENTRAL = "business_central", "Business Central"
    DATAVERSE = "dataverse", "Dataverse"
