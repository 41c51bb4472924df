"""Sync job services: create, enqueue (after commit), run, clean up."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from jobs.models import SyncError, SyncJob


def schedules_run_due() -> int:
    """Start every due schedule; return how many runs were started. Schedules arrive with issue 8."""
    return 0


def sync_jobs_delete_old(*, now=None) -> int:
    """Delete finished jobs (and their errors) older than the retention period; return how many jobs went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.SYNC_JOB_RETENTION_DAYS)
    SyncError.objects.filter(created_at__lt=cutoff).delete()
    deleted, _ = SyncJob.objects.filter(finished_at__lt=cutoff).delete()
    return deleted


def sync_job_run(*, job_id: int) -> None:
    raise NotImplementedError("being written")
