"""One log line per finished sync job, with its counts (the start line is jobs.services' own).

Listening to jobs' signal keeps the log of outcomes here, beside the alerts and metrics that read the same rows.
"""

import logging

from django.dispatch import receiver

from jobs.models import SyncJob
from jobs.signals import sync_jobs_finished

logger = logging.getLogger("syncadmin.runs")


@receiver(sync_jobs_finished, sender=SyncJob, dispatch_uid="operations.log_finished_runs")
def log_finished_runs(sender, jobs: list[SyncJob], **kwargs):
    finished = SyncJob.objects.filter(pk__in=[job.pk for job in jobs]).select_related("table_mapping").order_by("pk")
    for job in finished:
        counts = job.counts
        duration = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
        logger.info(
            "Sync job %s ended %s: %s %s, %s",
            job.pk,
            job.status,
            job.table_mapping.name,
            job.direction,
            ", ".join(f"{name} {value}" for name, value in counts.items()),
            extra={
                "event": "run_end",
                "job": job.pk,
                "mapping": job.table_mapping.name,
                "direction": job.direction,
                "kind": job.kind,
                "dry_run": job.dry_run,
                "status": job.status,
                "duration_seconds": duration,
                "http_requests": job.http_requests,
                **counts,
            },
        )
