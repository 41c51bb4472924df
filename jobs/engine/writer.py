"""Writing pages (docs/architecture.md "One sync", step 7): reserve the inserts, then write them in bulk.

Crash safety lives here. Before anything is written, every insert holds a reserved coupling, committed on its
own: Dataverse accepts our id, so the insert is an upsert by it and a rerun cannot create the row twice; Business
Central chooses its own ids, so a rerun first looks for the record an interrupted run may have created.

A page's writes go in bulk requests of the connection's batch size. The run hands them to its `WritePipeline`,
which sends them in parallel up to what the target client allows at each moment (its throttle's concurrency, capped
by the service), across page boundaries: the next page's requests start as soon as a slot frees, while the run
reads and plans the page after. Only HTTP runs on the pipeline's threads: the reservations are committed before,
and the results saved after, on the run's own thread and database connection (DirectionRun).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from connectors.odata import eq
from connectors.types import ConnectorError, RemoteClient, WriteOperation, WriteResult
from coupling.models import Coupling
from jobs.engine.coupling_rows import insert_couplings, update_couplings
from jobs.engine.planner import Action, Plan
from jobs.engine.reader import WATERMARK_OVERLAP
from jobs.engine.sides import Side
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

MAX_THREADS = 64  # above Dataverse's 52 concurrent requests per user
RESERVATION_FIELDS = ["bc_id", "dataverse_id", "pending", "reserved_at", "bc_name", "dataverse_name"]


@dataclass
class PageTicket:
    """A page whose write requests are in the pipeline: `on_saved` is called once all their results are saved."""

    requests: int
    on_saved: Callable[[], None]
    source_ids: set[Any] = field(default_factory=set)  # the records it writes, not saved yet


@dataclass
class WriteRequest:
    ticket: PageTicket
    plans: list[Plan]
    operations: list[WriteOperation]


@dataclass
class EndedRequest:
    request: WriteRequest
    results: list[WriteResult] | None = None
    error: BaseException | None = None


class PageWriter:
    def __init__(
        self,
        mapping: TableMapping,
        source: Side,
        target: Side,
        *,
        target_client: RemoteClient,
        target_select: list[str],
    ) -> None:
        self.mapping = mapping
        self.source, self.target = source, target
        self.target_client = target_client
        self.target_select = target_select

    def prepare(self, plans: list[Plan]) -> tuple[list[Plan], list[tuple[list[Plan], list[WriteOperation]]]]:
        """Reserve the page's inserts (committed before this returns), and split its writes into bulk requests.

        Returns the plans that write nothing (saved at once, with no result) and the requests: each its plans (an
        insert now with its reserved coupling) and their operations, of the client's current batch size.
        """
        plans = self._reserve_inserts(plans)
        operations, writing = [], []
        for index, plan in enumerate(plans):
            ref = str(index)
            if plan.action == Action.INSERT:
                operations.append(self._insert_operation(plan, ref))
            elif plan.action == Action.UPDATE:
                assert plan.target_row is not None
                operations.append(
                    WriteOperation(
                        kind="update",
                        entity_set=self.target.entity_set,
                        ref=ref,
                        values=plan.values,
                        record_id=self.target.row_id(plan.target_row),
                        etag=self.target.row_etag(plan.target_row) or None,
                    )
                )
            else:
                continue
            writing.append(plan)
        unwritten = [plan for plan in plans if plan.action not in (Action.INSERT, Action.UPDATE)]
        size = max(1, self.target_client.write_batch_size())
        requests = [
            (writing[start : start + size], operations[start : start + size])
            for start in range(0, len(operations), size)
        ]
        return unwritten, requests

    def looks_for_interrupted_inserts(self, plans: list[Plan]) -> bool:
        """Whether reserving these plans searches Business Central for records an interrupted run created.

        That search tells ours from others by the couplings saved so far: the run's writes still unsaved must be
        saved first, or a record this very run just created could be taken for another's.
        """
        return not self.target.is_dataverse and any(
            plan.action == Action.INSERT and plan.coupling is not None and plan.coupling.reserved for plan in plans
        )

    def _insert_operation(self, plan: Plan, ref: str) -> WriteOperation:
        if self.target.is_dataverse:
            # Dataverse accepts our id: upsert by it, so a rerun after a crash updates instead of duplicating.
            assert plan.coupling is not None
            return WriteOperation(
                kind="upsert",
                entity_set=self.target.entity_set,
                ref=ref,
                values=plan.values,
                record_id=plan.coupling.dataverse_id,
                returned=(self.target.name_field,),  # the coupling's name, when the mapping does not write it
            )
        return WriteOperation(kind="create", entity_set=self.target.entity_set, ref=ref, values=plan.values)

    def _reserve_inserts(self, plans: list[Plan]) -> list[Plan]:
        """Reserve a coupling (with the target id chosen, where the API allows) for each insert, before writing.

        Committed on their own, in bulk: whatever happens to the write, a rerun finds them and cannot insert twice.
        """
        if not any(plan.action == Action.INSERT for plan in plans):
            return plans
        now = timezone.now()
        source_attr = self.source.coupling_attr("id")
        reserved, new, changed = [], [], []
        interrupted = set()  # reserved Business Central inserts of an earlier run: their write may have landed
        for index, plan in enumerate(plans):
            if plan.action != Action.INSERT:
                reserved.append(plan)
                continue
            coupling = plan.coupling
            if coupling is None:
                coupling = Coupling(table_mapping=self.mapping, **{source_attr: self.source.row_id(plan.source_row)})
                new.append(coupling)
            else:
                changed.append(coupling)
                if coupling.reserved and not self.target.is_dataverse:
                    interrupted.add(index)
            if plan.restore:
                setattr(coupling, self.target.coupling_attr("id"), None)
            if self.target.is_dataverse and coupling.dataverse_id is None:
                coupling.dataverse_id = uuid.uuid4()
            coupling.reserve(now, restart=plan.restore)
            setattr(coupling, self.source.coupling_attr("name"), self.source.row_name(plan.source_row))
            reserved.append(dataclasses.replace(plan, coupling=coupling))
        with transaction.atomic():
            insert_couplings(new)
            update_couplings(changed, RESERVATION_FIELDS)
        return [self._recovered(plan) if index in interrupted else plan for index, plan in enumerate(reserved)]

    def _recovered(self, plan: Plan) -> Plan:
        """Find the Business Central record an interrupted run created before it could confirm it.

        Business Central chooses its own ids, so the record is looked up by its name among the records modified
        since the coupling was reserved; exactly one match is taken as ours and updated instead of created again.
        """
        coupling = plan.coupling
        name = plan.values.get(self.target.name_field)
        if not name or coupling is None or coupling.reserved_at is None:
            return plan
        try:
            pages = self.target_client.read_pages(
                self.target.entity_set,
                filter=eq(self.target.name_field, str(name)),
                modified_since=self.target_client.server_time_at(coupling.reserved_at) - WATERMARK_OVERLAP,
                select=self.target_select,
            )
            found = [row for page in pages for row in page.rows]
        except ConnectorError as exc:
            logger.warning("Could not look for an interrupted insert of %s: %s", name, exc)
            return plan
        taken = Coupling.objects.filter(
            table_mapping=self.mapping, bc_id__in=[self.target.row_id(row) for row in found]
        ).exists()
        if len(found) != 1 or taken:
            return plan
        coupling.bc_id = self.target.row_id(found[0])
        return dataclasses.replace(plan, action=Action.UPDATE, target_row=found[0])


class WritePipeline:
    """A run's bulk write requests, sent in parallel up to what the client allows at each moment, across pages.

    `submit` queues a page's requests; each starts as soon as the client's allowance (read again before every
    start, so a 429 met by one request slows the next ones) has a free slot, from the run's thread or from the
    thread of a request that just ended. Ended requests wait in `ended` for the run's thread, which saves them.
    Once a request raises, no further one starts: those in flight end, and the run sees the error among them.
    """

    def __init__(self, client: RemoteClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._waiting: deque[WriteRequest] = deque()
        self._running = 0
        self._stopped = False
        self._ended: queue.SimpleQueue[EndedRequest] = queue.SimpleQueue()
        self._unclaimed = 0  # ended and not yet taken by the run's thread
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, requests: list[WriteRequest]) -> None:
        if self._pool is None:
            self.client.hear_parallelism()  # so the first requests go out side by side, not the first one alone
        with self._lock:
            self._waiting.extend(requests)
            if self._pool is None:  # threads start only as requests are submitted
                self._pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="write")
        self._start_what_fits()

    def waiting(self) -> int:
        """Requests submitted and not started yet."""
        with self._lock:
            return len(self._waiting)

    def outstanding(self) -> int:
        """Requests submitted whose results the run has not taken yet."""
        with self._lock:
            return len(self._waiting) + self._running + self._unclaimed

    def running(self) -> int:
        with self._lock:
            return self._running

    def stop(self) -> None:
        """Start nothing more; the requests in flight end as they will."""
        with self._lock:
            self._stopped = True
            self._waiting.clear()

    def ended(self, *, wait: bool) -> Iterator[EndedRequest]:
        """The requests that ended, for the run's thread; with `wait`, at least one (if any is outstanding)."""
        block = wait and self.outstanding() > 0
        while True:
            try:
                done = self._ended.get(block=block)
            except queue.Empty:
                return
            block = False
            with self._lock:
                self._unclaimed -= 1
            yield done

    def close(self) -> None:
        """Release the threads once nothing is in flight (a later submit starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._stopped = False
        if pool is not None:
            pool.shutdown(wait=True)

    def _start_what_fits(self) -> None:
        with self._lock:
            while self._waiting and not self._stopped and self._running < self.client.parallelism():
                request = self._waiting.popleft()
                self._running += 1
                assert self._pool is not None
                self._pool.submit(self._send, request)

    def _send(self, request: WriteRequest) -> None:
        try:
            ended = EndedRequest(request, results=self.client.write_many(request.operations))
        except BaseException as exc:  # raised on the run's thread, once it takes this request
            ended = EndedRequest(request, error=exc)
        with self._lock:
            self._running -= 1
            self._unclaimed += 1
            if ended.error is not None:
                self._stopped = True
                self._waiting.clear()
        self._ended.put(ended)
        self._start_what_fits()
