from django.db import models


class SyncResult(models.TextChoices):
    NONE = "", "-"
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
