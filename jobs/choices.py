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


class RequestedVia(models.TextChoices):
    """What started a job, shown as "Requested by" beside the user (if any)."""

    USER = "user", "A user"
    SCHEDULE = "schedule", "The schedule"
    # A person clicked "Run now" on the schedule: the run is the schedule's (it moves the schedule), the click theirs.
    RUN_NOW = "run_now", "Run now on the schedule"
    # A person used a bulk action of a reconciliation's result (the job links back to it).
    RECONCILIATION = "reconciliation", "A reconciliation's bulk action"
    CHANGE_NOTIFICATION = "change_notification", "A change notification"
    COMMAND = "command", "The sync command"
    RECOVERY = "recovery", "Crash recovery (resuming a stopped run)"
    FOLLOW_UP = "follow_up", "Match-based coupling (its follow-up)"


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


class ErrorState(models.TextChoices):
    """Where a sync error stands now (BC's "Coupled Data Synchronization Errors" lists what is wrong now).

    An error is OPEN when saved. It leaves OPEN exactly once, to one of the other states, and never returns:
    - RESOLVED_BY_SYNC: a later run synchronized the same record in the same direction without error (written, or
      found already equal), closed by the engine's saver in the transaction that saves that run's page; or a run's
      deletion policy uncoupled the record (jobs/engine/deletions.py): a pair that is gone is no longer wrong; or,
      for an ambiguous match, a match-based coupling job coupled the record or found it matching no record any more;
    - RESOLVED_BY_HAND: a person resolved it (a conflict resolved field by field, its records uncoupled, or "mark as
      resolved");
    - SUPERSEDED: a newer error of the same record and direction replaced it (the newer one is the open one).
    A new state (e.g. for a skip policy) is one more choice here plus the code that moves errors into it; every
    count of "errors" counts OPEN only (`SyncError.objects.open()`), and the history filter shows the rest.
    """

    OPEN = "open", "Open"
    RESOLVED_BY_SYNC = "resolved_by_sync", "Resolved by a later sync"
    RESOLVED_BY_HAND = "resolved_by_hand", "Resolved by hand"
    SUPERSEDED = "superseded", "Superseded by a newer error"
