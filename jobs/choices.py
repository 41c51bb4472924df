from django.db import models


class JobKind(models.TextChoices):
    RECORDS = "records", "Selected records"
    MODIFIED = "modified", "Modified records"
    FULL = "full", "Full synchronization"
    COUPLING = "coupling", "Match-based coupling"
    UNCOUPLING = "uncoupling", "Uncoupling"
    DELETIONS = "deletions", "Confirmed deletions"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTLY_FAILED = "partly_failed", "Partly failed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.PARTLY_FAILED, JobStatus.FAILED, JobStatus.CANCELLED)


class ErrorClass(models.TextChoices):
    TRANSIENT = "transient", "Transient"
    THROTTLED = "throttled", "Throttled"
    AUTHENTICATION = "authentication", "Authentication"
    PERMISSION = "permission", "Permission"
    VALIDATION = "validation", "Validation"
    NOT_FOUND = "not_found", "Not found"
    CONFLICT = "conflict", "Update conflict"
    DELETION_CONFLICT = "deletion_conflict", "Deletion conflict"
    MISSING_DEPENDENCY = "missing_dependency", "Missing dependency"
    AMBIGUOUS_MATCH = "ambiguous_match", "Ambiguous match"
    INTERNAL = "internal", "Internal"
