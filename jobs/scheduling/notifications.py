"""Change notifications from either system become one debounced sync per mapping and direction.

A notification adds the changed record ids to a Redis set of the mapping and direction. The first notification of a
debounce window also schedules one flush job (RQ `enqueue_in`, run by the worker's scheduler) after the schedule's
debounce delay; later notifications in the window only add ids. The flush takes the whole set atomically and queues one
run: a run of exactly those records, or an incremental run when Business Central said `collection`, more than
MAX_PENDING_IDS records changed, or a run by ids would bypass the mapping's filter. So however many notifications
arrive, the work they start stays bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

import django_rq

from jobs.choices import JobKind, RequestedVia
from jobs.models import Schedule, SyncJob
from jobs.scheduling.schedules import schedule_wake
from jobs.services import QUEUE, SyncNotStarted, mapping_lock_key, sync_enqueue
from mappings.choices import Direction
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

MAX_PENDING_IDS = 1000  # beyond this many changed records, one incremental run reads them instead
PENDING_TTL_SECONDS = 24 * 3600  # forget ids whose flush never ran (no worker for a day); the schedule catches up
FLUSH_GRACE_SECONDS = 60  # the debounce marker outlives the delay by this much, then a lost flush is rescheduled
BUSY_RETRY_SECONDS = 5
DEFAULT_DEBOUNCE_SECONDS = 5


def _keys(mapping_id: int, direction: str) -> tuple[str, str, str]:
    prefix = f"syncadmin:changes:{mapping_id}:{direction}"
    return f"{prefix}:ids", f"{prefix}:incremental", f"{prefix}:flush-scheduled"


def changes_notified(
    *, mapping: TableMapping, direction: str, record_ids: Iterable = (), collection: bool = False
) -> bool:
    """Remember that records of `mapping` changed on the source side of `direction`; wake the schedule.

    `direction` is the sync direction that carries the change (to_dataverse for a Business Central change).
    Return True if a sync will follow (False when the mapping does not sync in that direction).
    """
    if direction not in _directions(mapping):
        return False
    schedule_wake(mapping=mapping)
    record_ids = [str(record_id) for record_id in record_ids]
    if not record_ids and not collection:
        return False  # only deletions: the woken schedule runs, and its run finds them (jobs/engine/deletions.py)
    connection = django_rq.get_connection(QUEUE)
    ids_key, incremental_key, flush_key = _keys(mapping.pk, direction)
    if collection or len(record_ids) > MAX_PENDING_IDS:
        connection.set(incremental_key, 1, ex=PENDING_TTL_SECONDS)
    else:
        pipe = connection.pipeline(transaction=True)
        pipe.sadd(ids_key, *record_ids)
        pipe.expire(ids_key, PENDING_TTL_SECONDS)
        pipe.scard(ids_key)
        if pipe.execute()[-1] > MAX_PENDING_IDS:
            connection.set(incremental_key, 1, ex=PENDING_TTL_SECONDS)
    delay = _debounce_seconds(mapping)
    if connection.set(flush_key, 1, nx=True, ex=delay + FLUSH_GRACE_SECONDS):
        _schedule_flush(mapping.pk, direction, delay)
    return True


def changes_flush(*, mapping_id: int, direction: str) -> list[SyncJob]:
    """Queue one run for everything notified for this mapping and direction since the last flush."""
    connection = django_rq.get_connection(QUEUE)
    ids_key, incremental_key, flush_key = _keys(mapping_id, direction)
    mapping = TableMapping.objects.filter(pk=mapping_id).first()
    if mapping is None:
        connection.delete(ids_key, incremental_key, flush_key)
        return []
    if connection.exists(mapping_lock_key(mapping_id)):
        # A run of this mapping holds its lock: a run queued now would be turned away. Try again shortly.
        connection.expire(flush_key, BUSY_RETRY_SECONDS + FLUSH_GRACE_SECONDS)
        _schedule_flush(mapping_id, direction, BUSY_RETRY_SECONDS)
        return []
    # Release the marker first: a notification from now on schedules the next flush; ids it adds before the
    # atomic read below are simply synchronized by this one.
    connection.delete(flush_key)
    pipe = connection.pipeline(transaction=True)
    pipe.smembers(ids_key)
    pipe.get(incremental_key)
    pipe.delete(ids_key, incremental_key)
    ids, incremental, _ = pipe.execute()
    if incremental or (ids and not _records_run_keeps_the_filter(mapping, direction)):
        kind, record_ids = JobKind.MODIFIED, None
    elif ids:
        kind, record_ids = JobKind.RECORDS, sorted(i.decode() for i in ids)
    else:
        return []
    try:
        return sync_enqueue(
            mapping=mapping,
            direction=direction,
            kind=kind,
            record_ids=record_ids,
            via=RequestedVia.CHANGE_NOTIFICATION,
        )
    except SyncNotStarted as exc:
        logger.warning("Notified changes of %s not synchronized: %s", mapping.name, exc)
        return []


def _records_run_keeps_the_filter(mapping: TableMapping, direction: str) -> bool:
    """A run of selected records reads them by id, without the mapping's filter on the source side. That is safe
    when only coupled records are synchronized (they were in scope when coupled) or when there is no filter; else an
    incremental run, which applies the filter, synchronizes the changes (e.g. a vendor account must not become a
    customer through the CUSTOMER mapping)."""
    source_filter = mapping.table_filter if direction == Direction.TO_DATAVERSE else mapping.dataverse_filter
    return mapping.sync_only_coupled or not source_filter.strip()


def _schedule_flush(mapping_id: int, direction: str, delay: int) -> None:
    # The changed ids are in Redis already: nothing to wait for in the database, enqueue now ("auto").
    queue = django_rq.get_queue(QUEUE, commit_mode="auto")
    if delay <= 0:
        queue.enqueue("jobs.scheduling.tasks.flush_notified_changes", mapping_id, direction, job_timeout=300)
    else:
        queue.enqueue_in(
            timedelta(seconds=delay), "jobs.scheduling.tasks.flush_notified_changes", mapping_id, direction
        )


def _debounce_seconds(mapping: TableMapping) -> int:
    schedule = Schedule.objects.filter(table_mapping=mapping).only("webhook_debounce_seconds").first()
    return schedule.webhook_debounce_seconds if schedule else DEFAULT_DEBOUNCE_SECONDS


def _directions(mapping: TableMapping) -> list[str]:
    return [
        d
        for d, on in (
            (Direction.TO_DATAVERSE, mapping.syncs_to_dataverse),
            (Direction.FROM_DATAVERSE, mapping.syncs_from_dataverse),
        )
        if on
    ]
