"""Back-off across runs for records failing transiently (issue 16, "A skip policy per error class").

A transient failure (throttled, 5xx, timeout, a write whose outcome is unknown) is never skipped: the service, not
the record, is the problem. Within a run the connectors already retry each request as the service asks
(connectors/resilience.py); across runs, retrying such a record at every run (every few seconds when change
notifications wake the schedule) would keep hammering a service that is struggling. So each record failing
transiently waits 1, 2, 4 ... SYNC_RETRY_BACKOFF_MINUTES (at most SYNC_RETRY_BACKOFF_MAX_MINUTES) before the next
modified-records run retries it.

The wait is kept on the record's open error (`retry_attempt`, `next_retry_at`), where the error page shows it:
- a new transient error of a record continues from its open error's attempt, a success closes the error and so
  ends the wait (the next failure starts at 1 again), and a permanent error has none;
- a full synchronization and a "synchronize now" of the record do not wait (jobs/engine/reader.py), nor does
  anything a person retries by hand.
Costs: a query per run for the records waiting, and a query per saved page that has transient failures.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings

from jobs.models import SyncError
from mappings.choices import TRANSIENT_ERROR_CLASSES, Direction

MAX_DOUBLINGS = 16  # 2**16 minutes is far beyond any sensible maximum: no overflow whatever the settings


def retryable(error_class: str, *, outcome_unknown: bool = False) -> bool:
    """Whether a failure of this class is transient: never skipped, retried after a back-off."""
    return error_class in TRANSIENT_ERROR_CLASSES or outcome_unknown


def retry_delay(attempt: int) -> timedelta:
    """The wait after a record's `attempt`-th transient failure in a row: 1, 2, 4 ... base minutes, capped."""
    base = settings.SYNC_RETRY_BACKOFF_MINUTES
    minutes = min(base * 2 ** min(max(attempt - 1, 0), MAX_DOUBLINGS), settings.SYNC_RETRY_BACKOFF_MAX_MINUTES)
    return timedelta(minutes=minutes)


def _source_attr(direction: str) -> str:
    """The record an error is about is its source record (SyncErrorQuerySet.of_records)."""
    return "bc_id" if direction == Direction.TO_DATAVERSE else "dataverse_id"


def schedule_retries(mapping_id: int, direction: str, errors: Iterable[SyncError], now: datetime) -> None:
    """Give each of these new (unsaved) transient errors its attempt and next retry time, one attempt after its
    record's open error in this direction. Call before the open errors are superseded by these."""
    errors = list(errors)
    attr = _source_attr(direction)
    ids = [getattr(e, attr) for e in errors if getattr(e, attr)]
    earlier: dict[UUID, int] = {}
    for start in range(0, len(ids), 500):
        earlier.update(
            SyncError.objects.open()
            .of_records(mapping_id, direction, ids[start : start + 500])
            .exclude(next_retry_at=None)
            .values_list(attr, "retry_attempt")
        )
    for error in errors:
        error.retry_attempt = min(earlier.get(getattr(error, attr), 0) + 1, 32767)
        error.next_retry_at = now + retry_delay(error.retry_attempt)


def waiting(mapping_id: int, direction: str, now: datetime) -> set[UUID]:
    """The source records of this mapping and direction whose transient failure's back-off has not ended."""
    attr = _source_attr(direction)
    return set(
        SyncError.objects.open()
        .filter(table_mapping_id=mapping_id, direction=direction, next_retry_at__gt=now)
        .exclude(**{f"{attr}__isnull": True})
        .values_list(attr, flat=True)
    )
