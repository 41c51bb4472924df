"""Reading a run's source rows (docs/architecture.md "One sync", step 4).

Pages of changed rows since the watermark, failed-not-skipped records of earlier runs first, the selected records
of a "synchronize now", and, for each page, its couplings and the coupled counterparts in the target.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from uuid import UUID

from django.db.models import Exists, OuterRef
from django.utils import timezone

from connectors.types import ConnectorError, Page, RemoteClient
from coupling.choices import SyncResult
from coupling.models import Coupling, KeptRecord
from jobs.choices import JobKind
from jobs.engine.backoff import waiting
from jobs.engine.ownership import EarlierMappings
from jobs.engine.sides import Row, Side, sides_for
from jobs.engine.unskip import unskip_fixed
from jobs.models import SyncJob
from mappings.models import TableMapping

# Re-read a little before the watermark: many rows can share a timestamp, and Dataverse has whole seconds only.
WATERMARK_OVERLAP = timedelta(seconds=1)
ID_CHUNK = 500
# A full synchronization stops once it has read this many times the records counted at its start. The count and the
# pages come from the same server and filter, so only records created during the run make them differ: tripling the
# table while it is read does not happen, whereas a server that keeps returning pages (a next link that leads back,
# a page that repeats) would hold the mapping's lock for ever. Small tables get at least RUNAWAY_FLOOR records.
RUNAWAY_FACTOR = 3
RUNAWAY_FLOOR = 1000


def source_watermark(mapping: TableMapping, source: Side) -> datetime | None:
    """The modified-on up to which the source's changes have been read (None: never read)."""
    return mapping.dataverse_watermark if source.is_dataverse else mapping.bc_watermark


def changes_waiting(mapping: TableMapping, direction: str, source_client: RemoteClient) -> bool:
    """Whether the source of `direction` holds a record a modified-records run would read and has not read yet:
    one request (`$top=1`) through the run's own table filter, for a record modified after the watermark.

    Strictly after the watermark (the run re-reads from just before it, finding the records it read already): a
    record changed within the same instant as the last one read is found by the next run anyway, at the latest when
    the inactivity timeout ends. Raises ConnectorError when the source cannot be read.
    """
    source, _ = sides_for(mapping, direction)
    return source_client.changed_after(
        source.entity_set, source_watermark(mapping, source), filter=source.table_filter or None
    )


_END = object()


def read_ahead(pages: Iterator[Page]) -> Iterator[Page]:
    """The same pages, the next one read on a background thread while the caller processes the current one.

    Only the HTTP read runs there (the pages come from the client, which touches no database); the watermark, the
    runaway check, cancellation and lock renewal stay with the caller. A run that stops early waits for the read in
    flight, so nothing reads on after it.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        following: Future[object] = pool.submit(next, pages, _END)
        try:
            while True:
                page = following.result()  # an error reading it is raised here, on the caller's thread
                if page is _END:
                    return
                following = pool.submit(next, pages, _END)
                assert isinstance(page, Page)
                yield page
        finally:
            following.cancel()
            # The run stopped for another reason, which is what it reports; the read in flight only has to end.
            with contextlib.suppress(Exception):
                following.result()
            close = getattr(pages, "close", None)  # a generator's: ends its open request
            if close is not None:
                close()


class SourceUnreadable(Exception):
    """The source could not be read: the run fails; it is never reported as '0 changes'."""


class SourceReader:
    """The source rows one run processes, a page at a time, and the latest modified-on among them."""

    def __init__(
        self,
        job: SyncJob,
        source: Side,
        target: Side,
        *,
        source_client: RemoteClient,
        target_client: RemoteClient,
        source_select: list[str],
        target_select: list[str],
    ) -> None:
        self.job = job
        self.mapping: TableMapping = job.table_mapping
        self.source, self.target = source, target
        self.source_client, self.target_client = source_client, target_client
        self.source_select, self.target_select = source_select, target_select
        self.latest_modified: datetime | None = None
        self.estimate: int | None = None  # records counted at the start (a full synchronization only)
        # Records already processed as failed-not-skipped retries, left out when the changed pages bring them again.
        # Only these are remembered: pages of one read are disjoint, so memory does not grow with the table.
        self._retried: set[UUID] = set()
        # Records failing transiently whose back-off has not ended (jobs/engine/backoff.py): left out of a
        # modified-records run, whether failed or changed again; a full sync and selected records do not wait.
        self._waiting: set[UUID] = set()
        # Each record left so is counted once as read, with the outcome "waiting to retry" (`on_waiting`), so the
        # run's records read still add up to their outcomes (SyncJob.counts_reconcile).
        self._waiting_counted: set[UUID] = set()
        self.on_waiting: Callable[[int], None] = lambda count: None

    def pages(self) -> Iterator[list[Row]]:
        """Yield the source rows to process, a page at a time; failed-not-skipped records come first. Records an
        earlier mapping of the same source table takes are left out (jobs/engine/ownership.py), and so are records
        kept uncoupled on purpose (`_kept_uncoupled`)."""
        earlier = EarlierMappings(self.mapping, self.source, self.source_client)
        kept = self._kept_uncoupled()
        for rows in self._pages():
            if kept:
                rows = [row for row in rows if self.source.row_id(row) not in kept]
            if earlier.filters:
                try:
                    rows = earlier.keep(rows)
                except ConnectorError as exc:
                    raise SourceUnreadable(
                        f"{self.source.label} {self.source.entity_set}: could not tell which records the mappings "
                        f"before {self.mapping.name} take: {exc}"
                    ) from exc
            yield rows

    def _kept_uncoupled(self) -> set[UUID]:
        """Uncoupled source records kept uncoupled on purpose (KeptRecord: their partner was deleted and the deletion
        policy is to uncouple and keep them): a run creating their partner would undo that deletion, so runs leave
        them out, a full synchronization too. Selected records ("synchronize now") are a person's choice: not left
        out. Once coupled again, a record's mark no longer applies."""
        if self.job.kind == JobKind.RECORDS:
            return set()
        id_attr = self.source.coupling_attr("id")
        # NOT EXISTS, a lookup per kept record, rather than NOT IN (all the mapping's coupled ids): a million
        # couplings are not read to leave out a few kept records.
        coupled = Coupling.objects.filter(table_mapping=self.mapping, **{id_attr: OuterRef("record_id")})
        return set(
            KeptRecord.objects.filter(table_mapping=self.mapping, side=self.source.kind)
            .exclude(Exists(coupled))
            .order_by()
            .values_list("record_id", flat=True)
        )

    def _pages(self) -> Iterator[list[Row]]:
        self.run_start = timezone.now()
        self._estimate_total()
        if self.job.kind == JobKind.RECORDS:
            # Selected records outside the mapping's filter are not synchronized (as BC: not offered at all).
            ids = [uuid.UUID(str(i)) for i in self.job.record_ids]
            for start in range(0, len(ids), ID_CHUNK):
                rows = self._read_by_ids(ids[start : start + ID_CHUNK])
                yield self._noted(list(rows.values()))
            return
        if self.job.kind != JobKind.FULL:
            unskip_fixed(self.mapping, self.job.direction, self.target, self.target_client)
            self._waiting = waiting(self.mapping.pk, self.job.direction, timezone.now())
            yield from (self._noted(rows) for rows in self._failed_not_skipped())
        yield from (self._noted(rows) for rows in self._read_changed())

    def watermark_limit(self) -> datetime | None:
        """The latest modified-on read, capped at the run's start on the source server's clock: rows changed during
        the run are read again next time (ours may be ahead of it; its modified-on values are on its clock)."""
        started = self.source_client.server_time_at(self.run_start)
        if self.latest_modified and self.latest_modified > started:
            return started
        return self.latest_modified

    def couplings(self, ids: list[UUID]) -> dict[UUID, Coupling]:
        """The couplings of a page's source records, in one query."""
        id_attr = self.source.coupling_attr("id")
        couplings = Coupling.objects.filter(table_mapping=self.mapping, **{f"{id_attr}__in": ids})
        return {getattr(c, id_attr): c for c in couplings}

    def counterparts(self, couplings: Iterable[Coupling]) -> dict[UUID, Row]:
        """The coupled target records, in one request or batch: {target id: row}."""
        target_attr = self.target.coupling_attr("id")
        target_ids = [getattr(c, target_attr) for c in couplings if getattr(c, target_attr)]
        if not target_ids:
            return {}
        try:
            return self.target_client.read_by_ids(self.target.entity_set, target_ids, select=self.target_select)
        except ConnectorError as exc:
            raise SourceUnreadable(
                f"{self.target.label} {self.target.entity_set} could not be read to compare: {exc}"
            ) from exc

    def _estimate_total(self) -> None:
        """How many records the run will read, for the progress shown while it runs (one count request)."""
        if self.job.kind == JobKind.RECORDS:
            total = len(self.job.record_ids)
        elif self.job.kind == JobKind.FULL:
            try:
                total = self.source_client.count(self.source.entity_set, filter=self.source.table_filter or None)
            except ConnectorError:
                return  # the read that follows reports the problem
        else:
            return  # an incremental run's size is unknown until it has read its changes
        self.estimate = total
        SyncJob.objects.filter(pk=self.job.pk).update(progress_total=total)

    def _noted(self, rows: list[Row]) -> list[Row]:
        """Track the latest modified-on read, for the watermark."""
        for row in rows:
            modified = self.source.row_modified(row)
            if modified and (self.latest_modified is None or modified > self.latest_modified):
                self.latest_modified = modified
        return rows

    def _watermark(self) -> datetime | None:
        if self.job.kind == JobKind.FULL:
            return None
        mark = source_watermark(self.mapping, self.source)
        return mark - WATERMARK_OVERLAP if mark else None

    def _read_changed(self) -> Iterator[list[Row]]:
        try:
            pages = read_ahead(
                self.source_client.read_pages(
                    self.source.entity_set,
                    filter=self.source.table_filter or None,
                    modified_since=self._watermark(),
                    select=self.source_select,
                )
            )
            read = 0
            for page in pages:
                read += len(page.rows)
                self._check_runaway(read)
                ids = [self.source.row_id(row) for row in page.rows]
                self._left_waiting([i for i in ids if i in self._waiting])
                yield [
                    row
                    for row, i in zip(page.rows, ids, strict=True)
                    if i not in self._retried and i not in self._waiting
                ]
        except ConnectorError as exc:
            raise SourceUnreadable(f"{self.source.label} {self.source.entity_set} could not be read: {exc}") from exc

    def _check_runaway(self, read: int) -> None:
        if self.estimate is None or read <= RUNAWAY_FACTOR * max(self.estimate, RUNAWAY_FLOOR):
            return
        raise SourceUnreadable(
            f"{self.source.label} {self.source.entity_set}: read {read} records, more than {RUNAWAY_FACTOR}x the "
            f"{self.estimate} records counted at the start: the source keeps returning pages; stopped."
        )

    def _left_waiting(self, ids: list[UUID]) -> None:
        new = [i for i in ids if i not in self._waiting_counted]
        if new:
            self._waiting_counted.update(new)
            self.on_waiting(len(new))

    def _read_by_ids(self, ids: list[UUID]) -> dict[UUID, Row]:
        try:
            return self.source_client.read_by_ids(
                self.source.entity_set, ids, select=self.source_select, filter=self.source.table_filter or None
            )
        except ConnectorError as exc:
            raise SourceUnreadable(f"{self.source.label} {self.source.entity_set} could not be read: {exc}") from exc

    def _failed_not_skipped(self) -> Iterator[list[Row]]:
        """Failed-but-not-skipped records are retried at every run, changed or not (as BC), except those failing
        transiently whose back-off has not ended."""
        id_attr = self.source.coupling_attr("id")
        candidates = Coupling.objects.filter(
            table_mapping=self.mapping,
            skipped=False,
            **{Coupling.result_field(self.job.direction): SyncResult.FAILURE},
        ).values_list(id_attr, "deleted_in")
        failed: list[UUID] = []
        for i, deleted_in in candidates:
            if not i:
                continue
            if i not in self._waiting:
                failed.append(i)
            elif deleted_in != self.source.system:  # a deletion waiting to be carried over: the deletion pass's
                self._left_waiting([i])
        for start in range(0, len(failed), ID_CHUNK):
            rows = self._read_by_ids(failed[start : start + ID_CHUNK])
            self._retried.update(rows)
            yield list(rows.values())
