"""The scheduler's tick: what RQ cron runs every 30 seconds (syncadmin/cron.py → jobs.tasks.scheduler_tick)."""

from jobs.reconciliation.services import reconciliations_run_due
from jobs.scheduling.schedules import schedules_check_on_hold, schedules_run_due
from jobs.scheduling.subscriptions import subscriptions_queue_renewal
from jobs.services import sync_runs_recover


def scheduler_tick() -> int:
    """Resume the runs whose worker stopped, check the schedules on hold for changes, start every due schedule, and
    queue renewals of expiring webhook subscriptions and the daily reconciliations; return how many scheduled runs
    started.

    Recovery comes first: a resumed run is a run in progress, so its mapping's schedule does not start another. The
    check comes before the start, so a hold that found a change runs in this same tick.
    """
    sync_runs_recover()
    schedules_check_on_hold()
    started = schedules_run_due()
    subscriptions_queue_renewal()
    reconciliations_run_due()
    return started
