"""RQ entry points. Thin: take primitive ids, call one service, own nothing else."""

from jobs import services
from jobs.scheduling.tick import scheduler_tick as tick


def run_sync_jobs(job_ids: list[int]) -> None:
    services.sync_jobs_run(job_ids=job_ids)


def help_shared_sync(job_id: int) -> int:
    return services.shared_sync_help(job_id=job_id)


def run_reconciliation(reconciliation_id: int) -> None:
    from jobs.reconciliation.services import reconciliation_run

    reconciliation_run(reconciliation_id=reconciliation_id)


def scheduler_tick() -> None:
    """Start the runs whose schedule is due (RQ cron calls this every 30 seconds)."""
    tick()


def cleanup_old_jobs() -> None:
    """Remove sync jobs and errors older than settings.SYNC_JOB_RETENTION_DAYS (RQ cron, daily)."""
    services.sync_jobs_delete_old()
