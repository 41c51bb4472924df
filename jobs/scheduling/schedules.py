"""Schedules: start the due runs, feed each run's outcome back, pause, resume and wake.

A schedule is due when it is enabled and `next_run_at` has passed, whatever its state: a schedule left "running" by
a worker that died is simply due again at its next run time. The RQ cron tick (every 30 seconds) calls
`schedules_run_due`; all state lives in the database, so edits in the admin apply at the next tick.

After max_attempts failed runs in a row a schedule shows "failing" and keeps retrying at its normal interval (it does
not stop, unlike Business Central's job queue): the usual causes (an expired secret, an outage) get fixed outside
syncadmin, and synchronization should resume by itself when they are, without someone remembering to restart it.
Until then failed runs are retried after RERUN_DELAY, as Business Central's "Rerun Delay".

A run that changed nothing puts its schedule on hold for the inactivity timeout, as Business Central does, to save
work while nothing changes. But a change made meanwhile must not wait the whole timeout: a change notification ends
the hold (`schedule_wake`), and without one the hold checks both systems at each interval (`schedules_check_on_hold`:
one `$top=1` request per system through the run's own filters, for a record modified after the watermark), and
runs at once when one has changed.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from connectors.types import ConnectorError
from jobs.choices import ACTIVE_STATUSES, JobKind, JobStatus, RequestedVia
from jobs.engine.reader import changes_waiting
from jobs.engine.sides import run_directions
from jobs.models import Schedule, ScheduleState, SyncJob
from jobs.scheduling.defaults import default_schedule_values
from jobs.services import SyncNotStarted, mappings_in_dependency_order, sync_enqueue
from mappings.companies import company_of
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

RERUN_DELAY = timedelta(seconds=30)


def schedule_create_default(*, mapping: TableMapping) -> Schedule:
    """The default schedule of a mapping (30 minutes, inactivity timeout by mapping name, 10 attempts)."""
    schedule, _ = Schedule.objects.get_or_create(table_mapping=mapping, defaults=default_schedule_values(mapping.name))
    return schedule


def schedules_run_due(*, now: datetime | None = None) -> int:
    """Start a run of every due schedule this process manages to claim; return how many runs were started."""
    now = now or timezone.now()
    due = list(Schedule.objects.filter(enabled=True, next_run_at__lte=now).select_related("table_mapping"))
    if not due:
        return 0
    # Runs are queued in dependency order (CURRENCY and SALESPEOPLE before CUSTOMER), so that on a new installation,
    # where every schedule is due at once, lookups find their couplings.
    position = {mapping.pk: i for i, mapping in enumerate(mappings_in_dependency_order())}
    started = 0
    for schedule in sorted(due, key=lambda s: (position.get(s.table_mapping_id, 0), s.next_run_at)):
        if schedule_start_run(schedule=schedule, now=now):
            started += 1
    return started


def schedules_check_on_hold(*, now: datetime | None = None) -> int:
    """Check the schedules on hold whose interval has passed since their last check (or their quiet run) for
    changes in either system since the watermark; make those with a change due now. Return how many woke.

    Each check is claimed with one conditional UPDATE of `checked_at`, so two schedulers do not check twice."""
    now = now or timezone.now()
    on_hold = Schedule.objects.filter(
        enabled=True, wake_on_change=True, state=ScheduleState.ON_HOLD, next_run_at__gt=now
    ).select_related("table_mapping")
    due = [
        schedule
        for schedule in on_hold
        if (schedule.checked_at or schedule.last_finished_at or now) + timedelta(minutes=schedule.minutes_between_runs)
        <= now
    ]
    if not due:
        return 0
    woken = 0
    with ExitStack() as stack:
        clients: dict[int, object] = {}

        def client(kind: ConnectionKind, mapping):
            # Business Central: the mapping's company (several may be enabled); Dataverse: the one environment.
            connection = (
                company_of(mapping) if kind == ConnectionKind.BUSINESS_CENTRAL else Connection.objects.active(kind)
            )
            if connection.pk not in clients:
                clients[connection.pk] = stack.enter_context(open_client(connection))
            return clients[connection.pk]

        for schedule in due:
            claimed = Schedule.objects.filter(
                pk=schedule.pk, state=ScheduleState.ON_HOLD, checked_at=schedule.checked_at
            ).update(checked_at=now)
            if claimed:
                woken += _check_one(schedule, client, now)
    return woken


def _check_one(schedule: Schedule, client, now: datetime) -> bool:
    mapping = schedule.table_mapping
    changed = []
    try:
        for direction in run_directions(mapping):
            source = ConnectionKind.BUSINESS_CENTRAL if direction == "to_dataverse" else ConnectionKind.DATAVERSE
            if changes_waiting(mapping, direction, client(source, mapping)):
                changed.append(source.label)
    except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
        # The run would fail the same way; the hold goes on, and the page says why it could not look.
        _set(schedule, last_message=f"On hold; could not check for changes: {exc}"[:2000])
        return False
    if not changed:
        return False
    woke = Schedule.objects.filter(pk=schedule.pk, state=ScheduleState.ON_HOLD).update(
        state=ScheduleState.READY,
        next_run_at=now,
        woken_at=now,
        last_message=f"A change in {' and '.join(changed)} ended the hold: running now.",
    )
    logger.info("Schedule of %s woken: changes in %s", mapping.name, changed)
    return bool(woke)


def schedule_next_run_for_interval(*, schedule: Schedule, now: datetime | None = None) -> datetime:
    """The next run once the interval is edited: a ready schedule's next run comes no later than the interval after
    its last run (a shorter interval moves it earlier; a longer one waits for this run). A hold checks at the new
    interval by itself; a running schedule takes it when the run ends."""
    now = now or timezone.now()
    if schedule.state != ScheduleState.READY:
        return schedule.next_run_at
    base = schedule.last_finished_at or now
    return min(schedule.next_run_at, max(now, base + timedelta(minutes=schedule.minutes_between_runs)))


def schedule_start_run(*, schedule: Schedule, now: datetime | None = None, user=None) -> bool:
    """Claim `schedule` (as read, possibly a moment ago by this or another scheduler) and enqueue its run.

    The claim is one conditional UPDATE on the next run time we read: of two schedulers that read the same due
    schedule, only the first UPDATE matches a row; the other sees 0 rows and starts nothing. Claim, job creation and
    the job ids are committed together, and the RQ job is enqueued only after that commit. `user`: the person who
    clicked "Run now" (the jobs then name them; without one, the schedule started them).
    """
    now = now or timezone.now()
    interval = timedelta(minutes=schedule.minutes_between_runs)
    with transaction.atomic():
        claimed = Schedule.objects.filter(
            pk=schedule.pk, enabled=True, next_run_at=schedule.next_run_at, next_run_at__lte=now
        ).update(state=ScheduleState.RUNNING, next_run_at=now + interval, run_started_at=now, run_job_ids=[])
        if not claimed:
            return False
        mapping = schedule.table_mapping
        if SyncJob.objects.filter(
            table_mapping=mapping, status__in=ACTIVE_STATUSES, kind__in=(JobKind.MODIFIED, JobKind.FULL)
        ).exists():
            # A run of this mapping (a long scheduled one, or a user's) is still going: try again next interval.
            _set(schedule, state=ScheduleState.READY, last_message="Skipped: a run of this mapping was in progress.")
            return False
        try:
            via = RequestedVia.RUN_NOW if user is not None else RequestedVia.SCHEDULE
            jobs = sync_enqueue(mapping=mapping, kind=JobKind.MODIFIED, user=user, via=via)
        except SyncNotStarted as exc:
            _set(
                schedule,
                state=ScheduleState.READY,
                failed_attempts=schedule.failed_attempts + 1,
                last_message=f"Not started: {exc}",
            )
            return False
        _set(schedule, run_job_ids=[job.pk for job in jobs])
    logger.info("Scheduled run of %s started (jobs %s)", mapping.name, [job.pk for job in jobs])
    return True


def schedule_record_outcome(*, mapping: TableMapping, jobs: list[SyncJob]) -> None:
    """Feed a finished run back into the mapping's schedule, if the run is the one the schedule started.

    Nothing changed (inserted + modified + deleted + failed = 0) -> on hold for the inactivity timeout, unless a
    change notification arrived meanwhile; changes -> next run after the interval; the run failed -> one more failed
    attempt, rerun after RERUN_DELAY until max_attempts, then at the interval.
    """
    schedule = Schedule.objects.filter(table_mapping=mapping).first()
    job_ids = {job.pk for job in jobs}
    if schedule is None or schedule.state != ScheduleState.RUNNING or not job_ids & set(schedule.run_job_ids):
        return  # a manual or notification-driven run: it does not move the schedule
    jobs = list(SyncJob.objects.filter(pk__in=schedule.run_job_ids))
    now = timezone.now()
    interval = timedelta(minutes=schedule.minutes_between_runs)
    written = sum(job.inserted + job.modified + job.deleted for job in jobs)
    failures = sum(job.failed for job in jobs)
    # Failures keep the schedule awake (the next run retries them), but they are no changes: the message says which.
    changes = written + failures
    failed = [job for job in jobs if job.status == JobStatus.FAILED]
    values = {"state": ScheduleState.READY, "last_finished_at": now, "run_job_ids": []}
    if failed:
        attempts = schedule.failed_attempts + 1
        values |= {
            "failed_attempts": attempts,
            "next_run_at": now + (RERUN_DELAY if attempts < schedule.max_attempts else interval),
            "last_message": f"Run failed: {failed[0].message}"[:2000],
        }
    elif all(job.status == JobStatus.CANCELLED for job in jobs):
        values |= {"next_run_at": now + interval, "last_message": "The run was cancelled."}
    elif changes == 0 and not (schedule.woken_at and schedule.woken_at >= schedule.run_started_at):
        timeout = timedelta(minutes=schedule.inactivity_timeout_minutes)
        values |= {
            "state": ScheduleState.ON_HOLD,
            "next_run_at": now + timeout,
            "checked_at": None,  # the first check comes one interval after this run
            "failed_attempts": 0,
            "last_message": "No changes: on hold, checking for changes at each interval.",
        }
    else:
        message = f"{written} record(s) written, {failures} failed."
        values |= {"next_run_at": now + interval, "failed_attempts": 0, "last_message": message}
    # Only the run that is still the current one may finish it (not one that a newer claim replaced).
    Schedule.objects.filter(pk=schedule.pk, state=ScheduleState.RUNNING, run_started_at=schedule.run_started_at).update(
        **values
    )


def schedule_wake(*, mapping: TableMapping, now: datetime | None = None) -> bool:
    """A change was notified: end an inactivity hold (next run within the interval). Return True if it woke."""
    now = now or timezone.now()
    schedule = Schedule.objects.filter(table_mapping=mapping, enabled=True, wake_on_change=True).first()
    if schedule is None:
        return False
    if schedule.state == ScheduleState.RUNNING:
        # The running run may have read before the change: it must not put the schedule on hold.
        Schedule.objects.filter(pk=schedule.pk).update(woken_at=now)
        return False
    soon = now + timedelta(minutes=schedule.minutes_between_runs)
    return bool(
        Schedule.objects.filter(pk=schedule.pk, state=ScheduleState.ON_HOLD).update(
            state=ScheduleState.READY, next_run_at=min(schedule.next_run_at, soon), woken_at=now
        )
    )


def schedules_pause(*, schedules, reason: str = "") -> int:
    """Stop starting runs (a running one finishes); `reason` is shown on the schedule (an alert rule gives one)."""
    return Schedule.objects.filter(pk__in=[s.pk for s in schedules]).update(enabled=False, paused_reason=reason[:500])


def schedules_resume(*, schedules, now: datetime | None = None) -> int:
    """Start again: ready, first run at the next tick, failed attempts and the pause's reason forgotten."""
    return Schedule.objects.filter(pk__in=[s.pk for s in schedules]).exclude(state=ScheduleState.RUNNING).update(
        enabled=True, state=ScheduleState.READY, next_run_at=now or timezone.now(), failed_attempts=0, paused_reason=""
    ) + Schedule.objects.filter(pk__in=[s.pk for s in schedules], state=ScheduleState.RUNNING).update(
        enabled=True, paused_reason=""
    )


def schedules_run_now(*, schedules, now: datetime | None = None, user=None) -> int:
    """Start the enabled schedules' runs now (the admin's "Run now", by `user`), through the same claim as the tick."""
    now = now or timezone.now()
    started = 0
    chosen = Schedule.objects.filter(pk__in=[s.pk for s in schedules], enabled=True)
    for schedule in chosen.exclude(state=ScheduleState.RUNNING).select_related("table_mapping"):
        Schedule.objects.filter(pk=schedule.pk).update(next_run_at=now)
        schedule.next_run_at = now
        started += schedule_start_run(schedule=schedule, now=now, user=user)
    return started


def _set(schedule: Schedule, **values) -> None:
    Schedule.objects.filter(pk=schedule.pk).update(**values)


def schedules_record_outcomes(*, jobs: list[SyncJob]) -> None:
    """Feed finished jobs of any mappings to their schedules (sent by jobs.services.sync_jobs_run as it ends)."""
    by_mapping: dict[int, list[SyncJob]] = {}
    for job in jobs:
        by_mapping.setdefault(job.table_mapping_id, []).append(job)
    for mapping_jobs in by_mapping.values():
        try:
            schedule_record_outcome(mapping=mapping_jobs[0].table_mapping, jobs=mapping_jobs)
        except Exception:  # the run's own result is saved already; a schedule problem must not fail the RQ job
            logger.exception("Could not record the outcome of jobs %s in their schedule", [j.pk for j in mapping_jobs])
