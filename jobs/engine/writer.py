"""Writing a page (docs/architecture.md "One sync", step 7): reserve the inserts, then write the page in bulk.

Crash safety lives here. Before anything is written, every insert holds a reserved coupling, committed on its
own: Dataverse accepts our id, so the insert is an upsert by it and a rerun cannot create the row twice; Business
Central chooses its own ids, so a rerun first looks for the record an interrupted run may have created.

The page's writes go in bulk requests of the connection's batch size, sent in parallel up to what the target client
allows now (its throttle's concurrency, capped by the service). Only HTTP runs on the pool's threads: the
reservations are committed before, and the results saved after, on the run's own thread and database connection.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

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

    def write(self, plans: list[Plan]) -> Iterator[list[tuple[Plan, WriteResult | None]]]:
        """Reserve the page's inserts, then write its inserts and updates in bulk requests; yield the plans (an insert
        now with its reserved coupling) with the results of their writes, part by part as the requests end, the
        plans that write nothing first (their result is None).

        The caller saves each part as it comes, on its own thread, while the other requests are still in flight.
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
        unwritten: list[tuple[Plan, WriteResult | None]] = [
            (plan, None) for plan in plans if plan.action not in (Action.INSERT, Action.UPDATE)
        ]
        if unwritten:
            yield unwritten
        for start, results in self._send(operations):
            yield list(zip(writing[start : start + len(results)], results, strict=True))

    def _send(self, operations: list[WriteOperation]) -> Iterator[tuple[int, list[WriteResult]]]:
        """Send the writes in bulk requests, as many at once as the client allows at each moment; yield each
        request's results (with the position of its first write) as it ends.

        The allowance is read again before each request starts, so a 429 met by one request slows the next ones.
        When a request raises, no further one starts; those in flight end and their results are yielded (their
        records are written), then the first error is raised.
        """
        client = self.target_client
        size = max(1, client.write_batch_size())
        starts = list(range(0, len(operations), size))
        if len(starts) <= 1:
            if operations:
                yield 0, client.write_many(operations)
            return
        waiting = deque(starts)
        running: dict[Future[list[WriteResult]], int] = {}
        failures: list[BaseException] = []
        # Threads start only as requests are submitted: as many as the allowance reached, at most.
        with ThreadPoolExecutor(max_workers=min(len(starts), MAX_THREADS), thread_name_prefix="write") as pool:
            while running or (waiting and not failures):
                while waiting and not failures and len(running) < client.parallelism():
                    start = waiting.popleft()
                    running[pool.submit(client.write_many, operations[start : start + size])] = start
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    start = running.pop(future)
                    try:
                        results = future.result()
                    except Exception as exc:  # raised on the run's thread once the others are in
                        failures.append(exc)
                        continue
                    yield start, results
        if failures:
            raise failures[0]

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
