"""What the admin's start page shows: each mapping's health, the running jobs, each connection's traffic, the charts.

Selectors only: everything is read, aggregated in the database (a few queries per part of the page, whatever the
number of jobs and errors; the charts' finished hours are kept in Redis, see dashboard_hours), and returned as plain
data for the template. `dashboard_context` gathers it for one user, leaving
out what the user may not view.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone

from adminkit.times import admin_time
from connectors.choices import ConnectionKind
from connectors.models import Connection
from jobs.admin.links import mapping_errors_url, mapping_jobs_url
from jobs.choices import ErrorClass, JobKind, JobStatus
from jobs.models import (
    Schedule,
    ScheduleState,
    SubscriptionStatus,
    SyncError,
    SyncJob,
    WebhookSubscription,
)
from mappings.choices import Direction
from mappings.models import TableMapping
from operations import dashboard_hours, traffic

HEALTHY, FAILING, PAUSED, IDLE, RUNNING = "healthy", "failing", "paused", "idle", "running"
ATTENTION = "attention"
# What the page's badge says; the key is the badge's class and data-health.
HEALTH_LABELS = {ATTENTION: "needs attention"}

# What each health means, in the order it is decided (the first that applies wins); the page's help shows this.
HEALTH_HELP = [
    (RUNNING, "a run of the mapping is under way now (a preview does not count)."),
    (PAUSED, "its schedule is switched off: no run starts unless someone starts one."),
    (
        FAILING,
        "its last run of modified records or full synchronization in either direction failed, or its schedule "
        "reached its maximum failed runs in a row (a failed retry of a few records is shown as records failing, "
        "not as the mapping failing).",
    ),
    (
        HEALTH_LABELS[ATTENTION],
        "its last run in a direction partly failed, it has open errors, or a later retry of some records failed: the "
        "reason says which, and the open errors are listed beside it.",
    ),
    (IDLE, "nothing is due soon: it has no schedule or has never run, or its schedule is on hold after a quiet run."),
    (HEALTHY, "its last runs succeeded (or were cancelled), it has no open error, and its schedule will run it again."),
]

RANGES = {
    "24h": ("24 hours", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
}
DEFAULT_RANGE = "24h"

# The runs that cover a whole direction: a mapping's health and lag come from these, not from a retry of a few records.
WHOLE_RUNS = (JobKind.MODIFIED, JobKind.FULL)
SUCCESSFUL = (JobStatus.SUCCEEDED, JobStatus.PARTLY_FAILED)

DIRECTIONS = [(Direction.TO_DATAVERSE, "bc_watermark"), (Direction.FROM_DATAVERSE, "dataverse_watermark")]
SOURCE_SIDE: dict[str, ConnectionKind] = {
    Direction.TO_DATAVERSE: ConnectionKind.BUSINESS_CENTRAL,
    Direction.FROM_DATAVERSE: ConnectionKind.DATAVERSE,
}


def open_errors():
    """The errors counted on the dashboard: the open ones, what the error list shows by default."""
    return SyncError.objects.open()


# -- mappings -------------------------------------------------------------------------------------------------------


@dataclass
class DirectionLag:
    direction: str
    label: str
    watermark: datetime | None
    # Now minus the start of the last successful whole run: every change made before that start was read. None: no
    # whole run of this direction has succeeded yet.
    lag: timedelta | None
    # From the source's change notifications, when it is subscribed to: the last one after the watermark (a change
    # is waiting), or None with `subscribed` (no change notified since the watermark: probably nothing waits).
    subscribed: bool = False
    notified_at: datetime | None = None


@dataclass
class MappingRow:
    mapping: TableMapping
    health: str
    health_reason: str
    last_jobs: list[SyncJob]
    errors_by_class: list[tuple[str, str, int]]  # (class, label, count), largest first
    errors_total: int
    next_run: str
    lags: list[DirectionLag]
    jobs_url: str
    errors_url: str
    # Retries of a few records that failed after the last whole run: (job, records failed), per direction.
    failing_records: list[tuple[SyncJob, int]] = field(default_factory=list)

    @property
    def health_label(self) -> str:
        return HEALTH_LABELS.get(self.health, self.health)

    @property
    def lag(self) -> timedelta | None:
        """The largest lag of the mapping's directions (None if one of them never ran)."""
        known = [lag.lag for lag in self.lags if lag.lag is not None]
        if not self.lags or len(known) < len(self.lags):
            return None
        return max(known)


def _last_finished(direction: str, kinds=WHOLE_RUNS, statuses=None, value: str = "pk"):
    jobs = SyncJob.objects.filter(
        table_mapping=OuterRef("pk"), direction=direction, dry_run=False, finished_at__isnull=False, kind__in=kinds
    )
    if statuses:
        jobs = jobs.filter(status__in=statuses)
    return Subquery(jobs.order_by("-finished_at").values(value)[:1])


def _prefix(direction: str) -> str:
    return "to" if direction == Direction.TO_DATAVERSE else "from"


def _annotated(mapping: TableMapping, name: str, direction: str):
    """One of `_annotations()` of `mapping`, e.g. name "last_{}_id" for the direction's last whole run."""
    return getattr(mapping, name.format(_prefix(direction)))


def _annotations() -> dict:
    """Per direction: the last whole run, the start of the last successful one (the lag) and the last retry."""
    annotations = {}
    for direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE):
        prefix = _prefix(direction)
        annotations[f"last_{prefix}_id"] = _last_finished(direction)
        annotations[f"synced_{prefix}_from"] = _last_finished(direction, statuses=SUCCESSFUL, value="started_at")
        annotations[f"retry_{prefix}_id"] = _last_finished(direction, kinds=(JobKind.RECORDS,))
    return annotations


def _directions(mapping: TableMapping) -> list[tuple[str, str]]:
    wanted = {
        Direction.TO_DATAVERSE: mapping.syncs_to_dataverse,
        Direction.FROM_DATAVERSE: mapping.syncs_from_dataverse,
    }
    return [(direction, watermark) for direction, watermark in DIRECTIONS if wanted[direction]]


def _next_run(schedule: Schedule | None, now: datetime) -> str:
    if schedule is None:
        return "no schedule"
    if not schedule.enabled:
        return "paused"
    if schedule.state == ScheduleState.RUNNING:
        return "running now"
    when = admin_time(schedule.next_run_at)
    if schedule.state == ScheduleState.ON_HOLD:
        if schedule.wake_on_change:
            # It checks both systems at each interval and runs at once on a change (jobs.scheduling.schedules).
            return f"idle: checking every {schedule.minutes_between_runs} min for changes; at the latest {when}"
        return f"on hold until {when}"
    if schedule.next_run_at <= now:
        return "due now"
    return when


def _health(
    schedule: Schedule | None,
    last_jobs: list[SyncJob],
    running: bool,
    *,
    open_errors: int = 0,
    failing_records: int = 0,
) -> tuple[str, str]:
    if running:
        return RUNNING, "a run is under way"
    if schedule is not None and not schedule.enabled:
        return PAUSED, "the schedule is switched off"
    failed = [job for job in last_jobs if job.status == JobStatus.FAILED]
    if failed:
        return FAILING, f"the last run {failed[0].get_direction_display().lower()} failed"
    if schedule is not None and schedule.is_failing:
        return FAILING, f"{schedule.failed_attempts} failed runs in a row"
    # A run that partly failed, or errors still open, is no "healthy": the demo showed "healthy" beside a run that
    # failed 4 records and their 4 open errors. Say what is wrong, with the figures.
    attention = [
        f"the last run {job.get_direction_display().lower()} partly failed ({job.failed} of {job.records_read} "
        "records failed)"
        for job in last_jobs
        if job.status == JobStatus.PARTLY_FAILED
    ]
    if open_errors:
        attention.append(f"{open_errors} open error{'s' if open_errors != 1 else ''}")
    if failing_records:
        attention.append(f"{failing_records} record{'s' if failing_records != 1 else ''} failing in a later retry")
    if attention:
        return ATTENTION, "; ".join(attention)
    if schedule is None:
        return IDLE, "no schedule"
    if not last_jobs:
        return IDLE, "never run"
    if schedule.state == ScheduleState.ON_HOLD:
        return IDLE, "on hold after a run that changed nothing"
    return HEALTHY, "runs as scheduled"


def mapping_rows(*, now: datetime | None = None) -> list[MappingRow]:
    """One row per table mapping; six queries whatever the number of jobs and errors."""
    now = now or timezone.now()
    mappings = list(
        TableMapping.objects.select_related("company").annotate(**_annotations()).order_by("company__name", "name")
    )
    schedules = {s.table_mapping_id: s for s in Schedule.objects.all()}
    last_ids = [
        pk
        for m in mappings
        for direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE)
        for name in ("last_{}_id", "retry_{}_id")
        if (pk := _annotated(m, name, direction))
    ]
    last_jobs = SyncJob.objects.defer("preview", "record_ids").in_bulk(last_ids)
    running = set(
        SyncJob.objects.filter(status=JobStatus.RUNNING, dry_run=False).values_list("table_mapping_id", flat=True)
    )
    errors: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for row in open_errors().values("table_mapping_id", "error_class").annotate(n=Count("pk")).order_by():
        errors[row["table_mapping_id"]].append((row["error_class"], row["n"]))
    labels = dict(ErrorClass.choices)
    subscriptions = {
        (s.table_mapping_id, s.side): s.last_notification_at
        for s in WebhookSubscription.objects.filter(status=SubscriptionStatus.ACTIVE).only(
            "table_mapping_id", "side", "last_notification_at"
        )
    }

    rows = []
    for mapping in mappings:
        schedule = schedules.get(mapping.pk)
        directions = _directions(mapping)
        last_of: dict[str, Any] = {d: _annotated(mapping, "last_{}_id", d) for d, _ in directions}
        jobs = [last_jobs[last_of[d]] for d, _ in directions if last_of[d] in last_jobs]
        failing = _failing_retries(mapping, directions, last_jobs)
        by_class = sorted(errors.get(mapping.pk, []), key=lambda item: -item[1])
        health, reason = _health(
            schedule,
            jobs,
            mapping.pk in running,
            open_errors=sum(n for _, n in by_class),
            failing_records=sum(count for _, count in failing),
        )
        lags = []
        for direction, watermark_field in directions:
            watermark = getattr(mapping, watermark_field)
            synced_from = _annotated(mapping, "synced_{}_from", direction)
            # A change notified after the last successful run started (or, before any, after the watermark) waits.
            since = synced_from or watermark
            side = (mapping.pk, SOURCE_SIDE[direction])
            notified = subscriptions.get(side)
            lags.append(
                DirectionLag(
                    direction=direction,
                    label=Direction(direction).label,
                    watermark=watermark,
                    lag=max(timedelta(0), now - synced_from) if synced_from else None,
                    subscribed=side in subscriptions,
                    notified_at=notified if notified and (since is None or notified > since) else None,
                )
            )
        rows.append(
            MappingRow(
                mapping=mapping,
                health=health,
                health_reason=reason,
                last_jobs=jobs,
                errors_by_class=[(name, labels.get(name, name), n) for name, n in by_class],
                errors_total=sum(n for _, n in by_class),
                next_run=_next_run(schedule, now),
                lags=lags,
                jobs_url=mapping_jobs_url(mapping.pk),
                errors_url=mapping_errors_url(mapping.pk),
                failing_records=failing,
            )
        )
    return rows


def _failing_retries(mapping, directions, jobs_by_id) -> list[tuple[SyncJob, int]]:
    """The last retry of a few records per direction, when it failed some and finished after the last whole run."""
    failing = []
    for direction, _ in directions:
        retry = jobs_by_id.get(_annotated(mapping, "retry_{}_id", direction))
        whole = jobs_by_id.get(_annotated(mapping, "last_{}_id", direction))
        if retry is None or not retry.failed:
            continue
        if whole is None or retry.finished_at > whole.finished_at:
            failing.append((retry, retry.failed))
    return failing


# -- running jobs ---------------------------------------------------------------------------------------------------


@dataclass
class RunningJob:
    job: SyncJob
    percent: int | None  # None while the total is not known
    rate: float | None  # records per second
    time_left: timedelta | None


def running_jobs(*, now: datetime | None = None) -> list[RunningJob]:
    """The jobs running now, oldest first, with their progress, rate and an estimate of the time left."""
    now = now or timezone.now()
    result = []
    jobs = SyncJob.objects.filter(status=JobStatus.RUNNING).select_related("table_mapping").order_by("started_at")
    for job in jobs.defer("preview", "record_ids"):
        elapsed = (now - job.started_at).total_seconds() if job.started_at else 0
        rate = job.progress_done / elapsed if elapsed > 0 and job.progress_done else None
        total = job.progress_total
        percent = min(100, round(100 * job.progress_done / total)) if total else None
        left = None
        if rate and total and total > job.progress_done:
            left = timedelta(seconds=round((total - job.progress_done) / rate))
        result.append(RunningJob(job=job, percent=percent, rate=rate, time_left=left))
    return result


def queued_job_count() -> int:
    return SyncJob.objects.filter(status=JobStatus.QUEUED).count()


# -- connections ----------------------------------------------------------------------------------------------------


@dataclass
class ConnectionRow:
    connection: Connection
    traffic: traffic.ConnectionTraffic | None  # None when Redis cannot be read


def connection_rows(*, now: float | None = None) -> list[ConnectionRow]:
    connections = list(Connection.objects.order_by("kind", "name").only("pk", "kind", "name", "enabled"))
    counts = traffic.traffic_read([(c.pk, c.kind) for c in connections], now=now) or {}
    return [ConnectionRow(connection=c, traffic=counts.get(c.pk)) for c in connections]


# -- charts ---------------------------------------------------------------------------------------------------------


@dataclass
class Charts:
    range_key: str
    range_label: str
    records: dict = field(default_factory=dict)  # {"labels": [...], "datasets": [{"label":..., "data": [...]}]}
    errors: dict = field(default_factory=dict)
    durations: dict = field(default_factory=dict)


def charts(*, range_key: str = DEFAULT_RANGE, now: datetime | None = None) -> Charts:
    """Records synchronized and errors per hour, and run durations per mapping and hour, over the range."""
    now = now or timezone.now()
    if range_key not in RANGES:
        range_key = DEFAULT_RANGE
    label, length = RANGES[range_key]
    hours = dashboard_hours.hours_between(now - length, now)
    figures = dashboard_hours.figures_by_hour(now - length, now)
    empty: dict[str, dict[str, Any]] = {"jobs": {}, "errors": {}}
    per_hour = [figures.get(dashboard_hours.hour_key(hour), empty) for hour in hours]
    hour_labels = [timezone.localtime(hour).strftime("%m-%d %H:00") for hour in hours]

    records = {
        "labels": hour_labels,
        "datasets": [
            {
                "label": name.capitalize(),
                "key": name,
                "data": [sum(counts[position] for counts in hour["jobs"].values()) for hour in per_hour],
            }
            for position, name in enumerate(dashboard_hours.RECORD_COUNTS)
        ],
    }
    # With several companies a name is theirs all: the company tells the lines apart.
    mappings = list(TableMapping.objects.values_list("pk", "name", "company__name"))
    several = len({company for _, _, company in mappings}) > 1
    names = {pk: f"{name} ({company})" if several and company else name for pk, name, company in mappings}
    mapping_ids = sorted({int(pk) for hour in per_hour for pk in hour["jobs"]}, key=lambda pk: names.get(pk, ""))
    durations = {
        "labels": hour_labels,
        "datasets": [
            {
                "label": names.get(pk, f"mapping {pk}"),
                "key": names.get(pk, str(pk)),
                "data": [hour["jobs"].get(str(pk), [None] * 5)[4] for hour in per_hour],
            }
            for pk in mapping_ids
        ],
    }
    labels = dict(ErrorClass.choices)
    classes = {name for hour in per_hour for name in hour["errors"]}
    errors = {
        "labels": hour_labels,
        "datasets": [
            {"label": labels.get(name, name), "key": name, "data": [hour["errors"].get(name, 0) for hour in per_hour]}
            for name in [*ErrorClass.values, *sorted(classes - set(ErrorClass.values))]
            if name in classes
        ],
    }
    return Charts(range_key=range_key, range_label=label, records=records, errors=errors, durations=durations)


# -- the page -------------------------------------------------------------------------------------------------------


def dashboard_context(user, *, range_key: str = DEFAULT_RANGE, now: datetime | None = None) -> dict:
    """Everything the start page shows `user`, leaving out what the user may not view."""
    now = now or timezone.now()
    can_view_jobs = user.has_perm("jobs.view_syncjob")
    can_view_errors = user.has_perm("jobs.view_syncerror")
    context = {
        "health_help": HEALTH_HELP,
        "ranges": [(key, label) for key, (label, _) in RANGES.items()],
        "service_limits": traffic.SERVICE_LIMITS,
        "window_minutes": traffic.WINDOW_MINUTES,
        "can_view_mappings": user.has_perm("mappings.view_tablemapping"),
        "can_view_jobs": can_view_jobs,
        "can_view_errors": can_view_errors,
        "can_view_connections": user.has_perm("connectors.view_connection"),
    }
    if context["can_view_mappings"]:
        context["mapping_rows"] = mapping_rows(now=now)
    if can_view_jobs:
        context["running_jobs"] = running_jobs(now=now)
        context["queued_jobs"] = queued_job_count()
    if context["can_view_connections"]:
        context["connection_rows"] = connection_rows(now=now.timestamp())
    if can_view_jobs or can_view_errors:
        context["charts"] = charts(range_key=range_key, now=now)
    return context
