"""The scheduler's tick: what RQ cron runs every 30 seconds (syncadmin/cron.py → jobs.tasks.scheduler_tick)."""

from jobs.scheduling.schedules import schedules_run_due
from jobs.scheduling.subscriptions import subscriptions_queue_renewal


def scheduler_tick() -> int:
    """Start every due schedule and queue renewals of expiring webhook subscriptions; return how many runs started."""
    started = schedules_run_due()
    subscriptions_queue_renewal()
    return started
