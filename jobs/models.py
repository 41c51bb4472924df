from django.conf import settings
from django.db import models

from jobs.choices import ErrorClass, JobKind, JobStatus
from mappings.choices import Direction
from mappings.models import TableMapping

COUNTER_FIELDS = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed", "coupled", "uncoupled")


class SyncJob(models.Model):
    """One run of one table mapping in one direction (BC's Integration Synch. Job), as shown in the job log."""

    kind = models.CharField(max_length=20, choices=JobKind.choices, default=JobKind.MODIFIED)
    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="sync_jobs")
    direction = models.CharField(max_length=20, choices=Direction.choices)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    dry_run = models.BooleanField(default=False, help_text="A preview: planned, nothing written.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    rq_job_id = models.CharField(max_length=64, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    inserted = models.PositiveIntegerField(default=0)
    modified = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    coupled = models.PositiveIntegerField(default=0)
    uncoupled = models.PositiveIntegerField(default=0)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True, help_text="Estimated records to process.")
    http_requests = models.PositiveIntegerField(default=0)
    http_requests_by_kind = models.JSONField(default=dict, blank=True)
    record_ids = models.JSONField(default=list, blank=True, help_text="Selected source records (selection runs).")
    cancel_requested = models.BooleanField(default=False)
    message = models.TextField(blank=True)
    preview = models.JSONField(default=dict, blank=True, help_text="For a dry run: sample of field differences.")

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [models.Index(fields=["table_mapping", "-queued_at"])]
        permissions = [("run_sync", "Can run synchronizations and coupling jobs")]

    def __str__(self):
        return f"#{self.pk} {self.table_mapping.name} {self.get_direction_display()} ({self.get_status_display()})"

    @property
    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_FIELDS}


class SyncError(models.Model):
    """A record that failed in a sync job, with both records' ids and names and a classified reason."""

    job = models.ForeignKey(SyncJob, on_delete=models.CASCADE, related_name="errors")
    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="sync_errors")
    direction = models.CharField(max_length=20, choices=Direction.choices)
    bc_id = models.UUIDField("Business Central id", null=True, blank=True)
    dataverse_id = models.UUIDField("Dataverse id", null=True, blank=True)
    bc_name = models.CharField("Business Central name", max_length=250, blank=True)
    dataverse_name = models.CharField("Dataverse name", max_length=250, blank=True)
    error_class = models.CharField(max_length=30, choices=ErrorClass.choices, db_index=True)
    message = models.TextField()
    detail = models.TextField(blank=True, help_text="Remote code, response excerpt, trace.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["table_mapping", "-created_at"])]

    def __str__(self):
        return f"{self.table_mapping.name}: {self.message[:80]}"
