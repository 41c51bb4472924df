"""Periodic jobs, loaded by the scheduler process: `manage.py rqcron syncadmin.cron`.

RQ's cron scheduler enqueues these on their queue; the RQ workers run them. Schedules that administrators define
(jobs.Schedule) are not listed here: the tick below finds the due ones every 30 seconds.
"""

from rq import cron

from jobs.tasks import cleanup_old_jobs, scheduler_tick
from operations.tasks import evaluate_alerts

# Short-lived: a tick only enqueues the due runs, so a late tick is worthless once the next one exists.
cron.register(scheduler_tick, queue_name="default", interval=30, job_timeout=60, ttl=60, result_ttl=300)
# Alert rules, beside the tick (jobs knows nothing of alerts); short-lived like it.
cron.register(evaluate_alerts, queue_name="default", interval=30, job_timeout=120, ttl=60, result_ttl=300)
# Every day at 03:15 UTC, on the low-priority queue so it never delays a sync.
cron.register(cleanup_old_jobs, queue_name="low", cron="15 3 * * *", job_timeout=3600, result_ttl=86400)
