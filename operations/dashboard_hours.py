"""The dashboard charts' figures per hour: what the jobs that finished in an hour did, and the errors of that hour.

Aggregated in the database, one GROUP BY hour query for the jobs and one for the errors. Over 30 days that reads
216,000 jobs (one run per mapping per minute) and 100,000 errors: about half a second on SQLite. A finished hour does
not change any more (jobs and errors are stamped when they are written), so its figures are kept in Redis once
computed, and a page reads only the hours not kept yet, plus the live hour, from the database. An hour counts as
finished SETTLE_MINUTES after its end, since a job's finish time comes from its worker's clock, which may be behind.
Without Redis every hour is read from the database: slower, never stale. (Jobs deleted by hand from a kept hour still
count in it until it leaves the charts' ranges.)

The figures of an hour, keyed by its UTC start as "YYYY-MM-DD HH":
    {"jobs": {"<mapping id>": [inserted, modified, deleted, failed, average seconds or None]},
     "errors": {"<error class>": count}}
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, CharField, Count, FloatField, Func, Sum

from jobs.models import SyncError, SyncJob
from operations.traffic import redis_client

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
SETTLE_MINUTES = 10
KEEP_SECONDS = 32 * 24 * 3600  # the longest range, 30 days, and a margin
KEY_PREFIX = "syncadmin:dashboard:hour"
RECORD_COUNTS = ("inserted", "modified", "deleted", "failed")


class UTCHourKey(Func):
    """The UTC hour a time falls in, as the text "YYYY-MM-DD HH", computed in SQL.

    Django's TruncHour would do on PostgreSQL, but on SQLite it truncates in Python, a call per row (1.5 s over 30
    days of jobs); there the hour is cut from the stored text, which Django writes in UTC as "YYYY-MM-DD HH:MM:SS".
    Text, not a datetime, also spares converting every row back into a datetime.
    """

    output_field = CharField()

    def as_sql(self, compiler, connection, **extra_context):  # PostgreSQL
        sql, params = compiler.compile(self.source_expressions[0])
        return f"to_char({sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')", params

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"substr({sql}, 1, 13)", params


class SecondsBetween(Func):
    """Seconds from the first time to the second, in SQL (on SQLite Django subtracts datetimes in Python)."""

    output_field = FloatField()

    def as_sql(self, compiler, connection, **extra_context):  # PostgreSQL
        (start, start_params), (end, end_params) = (compiler.compile(e) for e in self.source_expressions)
        return f"EXTRACT(EPOCH FROM ({end} - {start}))", (*end_params, *start_params)

    def as_sqlite(self, compiler, connection, **extra_context):
        (start, start_params), (end, end_params) = (compiler.compile(e) for e in self.source_expressions)
        return f"((julianday({end}) - julianday({start})) * 86400.0)", (*end_params, *start_params)


def hour_key(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%d %H")


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """The UTC hours from the one `start` falls in to the one `end` falls in."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour <= end:
        hours.append(hour)
        hour += HOUR
    return hours


def _aggregate(start: datetime, end: datetime) -> dict[str, dict]:
    """The figures of each hour in [start, end) that has a finished job or an error: two queries."""
    figures: dict[str, dict] = defaultdict(lambda: {"jobs": {}, "errors": {}})
    # Bounded on both sides, so that SQLite expects few rows and reads them from the covering index.
    jobs = (
        SyncJob.objects.filter(finished_at__gte=start, finished_at__lt=end, dry_run=False)
        .annotate(hour=UTCHourKey("finished_at"))
        .values("hour", "table_mapping_id")
        .annotate(
            inserted=Sum("inserted"),
            modified=Sum("modified"),
            deleted=Sum("deleted"),
            failed=Sum("failed"),
            seconds=Avg(SecondsBetween("started_at", "finished_at")),
        )
        .order_by()
    )
    for job_row in jobs:
        row: dict[str, Any] = dict(job_row)  # annotated by name, which the typed values() row does not know
        seconds = round(row["seconds"], 2) if row["seconds"] is not None else None
        figures[row["hour"]]["jobs"][str(row["table_mapping_id"])] = [
            *(row[name] or 0 for name in RECORD_COUNTS),
            seconds,
        ]
    errors = (
        SyncError.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(hour=UTCHourKey("created_at"))
        .values("hour", "error_class")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for error_row in errors:
        figures[error_row["hour"]]["errors"][error_row["error_class"]] = error_row["n"]
    return dict(figures)


def _kept(keys: list[str]) -> dict[str, dict] | None:
    if not keys:
        return {}
    try:
        values = redis_client().mget([f"{KEY_PREFIX}:{key}" for key in keys])
    except Exception as exc:  # noqa: BLE001 (any Redis failure: read from the database instead)
        logger.warning("Chart figures are read from the database, Redis is unreachable (%s)", exc)
        return None
    return {key: json.loads(value) for key, value in zip(keys, values, strict=True) if value is not None}


def _keep(figures: dict[str, dict]) -> None:
    try:
        pipeline = redis_client().pipeline(transaction=False)
        for key, value in figures.items():
            pipeline.set(f"{KEY_PREFIX}:{key}", json.dumps(value, separators=(",", ":")), ex=KEEP_SECONDS)
        pipeline.execute()
    except Exception as exc:  # noqa: BLE001
        logger.warning("Chart figures are not kept, Redis is unreachable (%s)", exc)


def figures_by_hour(start: datetime, now: datetime) -> dict[str, dict]:
    """The figures of each hour from the one `start` falls in to now, by `hour_key` (hours without any left out)."""
    hours = hours_between(start, now)
    settled = [hour for hour in hours if hour + HOUR <= now - timedelta(minutes=SETTLE_MINUTES)]
    kept = _kept([hour_key(hour) for hour in settled])
    result = dict(kept or {})
    missing = [hour for hour in settled if hour_key(hour) not in result]
    if missing:
        fresh = _aggregate(missing[0], missing[-1] + HOUR)
        for hour in missing:
            result[hour_key(hour)] = fresh.get(hour_key(hour), {"jobs": {}, "errors": {}})
        if kept is not None:
            _keep({hour_key(hour): result[hour_key(hour)] for hour in missing})
    live_from = settled[-1] + HOUR if settled else hours[0]
    result.update(_aggregate(live_from, now + timedelta(seconds=1)))
    return result
