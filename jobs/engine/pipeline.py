"""One run of one table mapping in one direction, page by page (docs/architecture.md "One sync", steps 3 to 8).

Per page: read changed source rows -> load their couplings (one query) -> read coupled counterparts (one
request or batch) -> match uncoupled records -> plan each record (pure) -> write the page in bulk -> save
couplings, errors and counters in one transaction. A preview stops after planning.

The writes are pipelined across pages: a page's bulk requests are handed to the run's WritePipeline, and the next
page is read and planned while they are in flight (jobs/engine/writer.py); their results are saved on the run's
thread as they end. A later page never depends on an earlier page's unsaved results: before it is planned, the
run saves every write still in flight when the page holds a record written there (the same record twice in one
run), when it matches uncoupled records against the target (the candidates' couplings must be saved), when a
lookup goes through this same mapping (its couplings must be saved), and when it looks for inserts an interrupted
run may have made in Business Central. The run ends (`finish`) only once every write is saved.

Each step has its module: reader, matcher, planner, writer, saver (and preview). `DirectionRun` joins them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db.models import F

from connectors.types import ConnectorError, RemoteClient
from coupling.matching import MatchGroup, match_criteria
from jobs.choices import JobKind
from jobs.engine.matcher import SyncMatcher
from jobs.engine.options import OptionAppender
from jobs.engine.planned import PlannedCouplings, PlannedPair
from jobs.engine.planner import Action, Plan, PlanContext, plan_record
from jobs.engine.preview import empty_preview, tally_preview
from jobs.engine.reader import SourceReader, SourceUnreadable
from jobs.engine.saver import PageSaver
from jobs.engine.sides import Row, Side, sides_for
from jobs.engine.values import (
    FieldRule,
    LookupResolver,
    company_stamp_on_insert,
    compile_initial_rules,
    compile_rules,
    source_fields,
)
from jobs.engine.writer import PageTicket, PageWriter, WritePipeline, WriteRequest
from jobs.models import SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping

logger = logging.getLogger(__name__)


class RunCancelled(Exception):
    pass


@dataclass
class RunOutcome:
    latest_modified: datetime | None = None  # for the watermark, capped at the run's start
    preview: dict[str, Any] = field(default_factory=empty_preview)


class DirectionRun:
    """Synchronize one mapping in one direction for one SyncJob row."""

    def __init__(
        self,
        job: SyncJob,
        *,
        bc_client: RemoteClient,
        dataverse_client: RemoteClient,
        on_page: Callable[[], None] | None = None,
        planned: PlannedCouplings | None = None,
    ) -> None:
        self.job = job
        # A preview in a chain: what the earlier previews would couple counts as coupled, and this one adds its own.
        self.planned = planned if planned is not None else PlannedCouplings()
        self.on_page = on_page or (lambda: None)  # e.g. renew the mapping's run lock
        mapping: TableMapping = job.table_mapping
        direction = job.direction
        source, target = sides_for(mapping, direction)
        self.source = source
        source_client = dataverse_client if source.is_dataverse else bc_client
        target_client = dataverse_client if target.is_dataverse else bc_client
        self.target_client = target_client
        self.source_client = source_client
        # Values for new records chosen by a filter on the source record (first match, in order).
        self.templates = [
            (template.source_filter.strip(), dict(template.values or {}))
            for template in mapping.new_record_templates.filter(target=target.system).order_by("position", "id")
        ]
        rules = compile_rules(mapping, direction, source, target)
        self.ctx = _plan_context(job, source, target, rules)
        # Checked against the target's metadata only when a page may create records (see _prepare_initial_values):
        # an incremental run that only updates does not download it.
        self._initial_candidates = compile_initial_rules(mapping, direction, source, target)
        self._initial_prepared = not self._initial_candidates
        match_groups = match_criteria(mapping)
        source_select, target_select = _selects(source, target, rules, self._initial_candidates, match_groups)
        self.matcher = SyncMatcher(
            job,
            source,
            target,
            groups=match_groups,
            source_client=source_client,
            target_client=target_client,
            source_select=source_select,
            target_select=target_select,
            planned=self.planned if job.dry_run else None,
        )
        self.reader = SourceReader(
            job,
            source,
            target,
            source_client=source_client,
            target_client=target_client,
            source_select=source_select,
            target_select=target_select,
        )
        self.reader.on_waiting = self._count_waiting
        self.writer = PageWriter(mapping, source, target, target_client=target_client, target_select=target_select)
        self.writes = WritePipeline(target_client)
        self._unsaved: dict[Any, int] = {}  # source id -> its writes in the pipeline, not saved yet
        self.saver = PageSaver(job, source, target, settle_ambiguous=self.matcher.settle_ambiguous)
        self.lookups = LookupResolver(
            rules, source, bc_client, dataverse_client, planned=self.planned if job.dry_run else None
        )
        self.options = OptionAppender(rules, source, target, source_client, target_client)
        # A lookup through this very mapping (a parent account, say) resolves by couplings its earlier pages save.
        self._looks_up_itself = any(rule.lookup.mapping_id == mapping.pk for rule in self.lookups.rules if rule.lookup)
        self.preview = empty_preview()
        self._seen: set[str] = set()  # a preview's source records read so far (lower-case ids)
        self._clients = (bc_client, dataverse_client)
        self._waited = self._throttle_wait()  # the clients may have served an earlier run

    def run(self) -> RunOutcome:
        with self.writing():
            for rows in self.source_pages():
                self.process_page(rows)
        return self.finish()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Process pages inside: on the way out every write in flight ends and its results are saved.

        A cancelled run writes what it had handed to the pipeline before the cancel was seen (as it wrote the page
        it was in), then stops; a failed one starts no further request, saves those in flight, and reports its own
        error.
        """
        try:
            yield
        except RunCancelled:
            self.settle()
            raise
        except BaseException:
            self.abandon()
            raise
        self.settle()

    def source_pages(self) -> Iterator[list[Row]]:
        """The source rows to process, a page at a time (a shared full sync hands them to several workers)."""
        return self.reader.pages()

    def finish(self) -> RunOutcome:
        # The watermark moves only past a run whose every write is saved: a failure among them fails the run here.
        self.settle()
        if self.job.dry_run:
            self._count_read_back()
        return RunOutcome(latest_modified=self.reader.watermark_limit(), preview=self.preview)

    def _count_waiting(self, count: int) -> None:
        """Records the reader left for a later run (their back-off has not ended): read, with that outcome."""
        if self.job.dry_run:
            counts = self.preview["counts"]
            counts["waiting"] = counts.get("waiting", 0) + count
            SyncJob.objects.filter(pk=self.job.pk).update(
                progress_done=F("progress_done") + count, preview=self.preview
            )
        else:
            SyncJob.objects.filter(pk=self.job.pk).update(
                progress_done=F("progress_done") + count, waiting=F("waiting") + count
            )

    def _count_read_back(self) -> None:
        """The records the other direction's preview would write here, which the real run reads back unchanged.

        In the real run the first direction writes them (to Dataverse, say), and the second reads them among its
        changes and finds nothing to do: a preview counts them so, once, unless it read them itself.
        """
        written = self.planned.written(self.job.table_mapping_id, self.source.kind) - self._seen
        if written:
            counts = self.preview["counts"]
            counts["unchanged"] = counts.get("unchanged", 0) + len(written)
            self.preview["read_back"] = len(written)
            SyncJob.objects.filter(pk=self.job.pk).update(progress_done=F("progress_done") + len(written))

    def process_page(self, rows: list[Row], on_saved: Callable[[], None] | None = None) -> None:
        """Process one page; `on_saved` is called once its results are all saved (maybe after this returns, as
        its writes end while later pages are processed)."""
        on_saved = on_saved or (lambda: None)
        self._save_ended(wait=False)  # what ended meanwhile, so that the progress shown is fresh
        self.on_page()
        if not rows:
            self.check_cancelled()
            on_saved()
            return
        ids = [self.source.row_id(row) for row in rows]
        if any(i in self._unsaved for i in ids):
            self.settle()  # the same record again: plan it from its saved coupling
        couplings = self.reader.couplings(ids)
        target_rows = self.reader.counterparts(couplings.values())
        if not self._initial_prepared and any(i not in couplings or couplings[i].pending for i in ids):
            self._prepare_initial_values()  # this page may create records
        # Before anything of the page is written (matching commits couplings): a cancel asked while the page and
        # its counterparts were read stops the run here.
        self.check_cancelled()
        uncoupled = [row for row, i in zip(rows, ids, strict=True) if i not in couplings]
        if uncoupled and self.matcher.groups:
            self.settle()  # the candidates an earlier page is creating must show as coupled
        matches = self.matcher.match(uncoupled)
        target_attr = self.ctx.target.coupling_attr("id")
        for source_id, (coupling, target_row) in matches.coupled.items():
            couplings[source_id] = coupling
            target_rows[getattr(coupling, target_attr)] = target_row
        if not self.job.dry_run:  # a preview changes nothing, not even a choice's options
            try:
                self.options.prepare(rows)
            except ConnectorError as exc:
                raise SourceUnreadable(f"{self.ctx.target.label}: a missing option could not be added: {exc}") from exc
        if self._looks_up_itself:
            self.settle()
        self.lookups.prepare(rows)
        # A record coupled by matching just now takes the source's values, as after match-based coupling.
        forced_ctx = dataclasses.replace(self.ctx, force=True)
        plans: list[Plan] = []
        may_create = [
            source_id
            for source_id in (ids if self.templates else [])
            if source_id not in matches.ambiguous
            and (
                (source_id not in couplings and not self.ctx.only_coupled)
                or (source_id in couplings and target_rows.get(getattr(couplings[source_id], target_attr)) is None)
            )
        ]
        templates = self._templates_for(may_create)
        # A preview: records the other direction's preview would write here the real run finds written already.
        read_back = self.planned.written(self.job.table_mapping_id, self.source.kind) if self.job.dry_run else set()
        for row, source_id in zip(rows, ids, strict=True):
            if self.job.dry_run:
                self._seen.add(str(source_id).lower())
                if source_id in matches.coupled and str(source_id).lower() in read_back:
                    plans.append(Plan(Action.UNCHANGED, row, message="Written by the other direction first."))
                    continue
            if source_id in matches.ambiguous:
                plans.append(self.matcher.ambiguous_plan(row, matches.ambiguous[source_id]))
                continue
            known = couplings.get(source_id)
            counterpart = target_rows.get(getattr(known, target_attr)) if known else None
            ctx = forced_ctx if source_id in matches.coupled else self.ctx
            if source_id in templates:
                ctx = dataclasses.replace(ctx, new_record_values={**ctx.new_record_values, **templates[source_id]})
            plans.append(plan_record(ctx, row, known, counterpart, self.lookups))
        if self.job.dry_run:
            tally_preview(self.preview, self.source, plans)
            # As the run counts them: pairs coupled by matching (besides their outcome), and the ambiguous (failed).
            self.preview["coupled"] = self.preview.get("coupled", 0) + self.matcher.newly_coupled(matches)
            self.preview["ambiguous"] = self.preview.get("ambiguous", 0) + len(matches.ambiguous)
            self._plan_couplings(plans, matches.coupled)
            # Counts with the records read, page by page: the page shows them while it runs, and a preview that
            # is cancelled or stops still adds up.
            SyncJob.objects.filter(pk=self.job.pk).update(
                progress_done=F("progress_done") + len(rows), preview=self.preview
            )
            on_saved()
        else:
            self._write(plans, on_saved)

    def _write(self, plans: list[Plan], on_saved: Callable[[], None]) -> None:
        """Reserve the page's inserts and hand its requests to the pipeline; return once few enough wait to start.

        Saved part by part as the writes end, on this thread; each part's records read are counted with their
        outcomes, in one transaction: records read always equal their outcomes.
        """
        if self.writer.looks_for_interrupted_inserts(plans):
            self.settle()
        unwritten, requests = self.writer.prepare(plans)
        if unwritten:
            self.saver.save([(plan, None) for plan in unwritten], read=len(unwritten))
        if not requests:
            on_saved()
            self._record_pacing()
            return
        ticket = PageTicket(requests=len(requests), on_saved=on_saved)
        for part, _ in requests:
            for plan in part:
                source_id = self.source.row_id(plan.source_row)
                self._unsaved[source_id] = self._unsaved.get(source_id, 0) + 1
        self.writes.submit([WriteRequest(ticket, part, operations) for part, operations in requests])
        # Keep one round of requests queued for the slots while the next page is read and planned, no more: the
        # pages held in memory stay few.
        while self.writes.waiting() > self.target_client.parallelism():
            self._save_ended(wait=True)
        self._record_pacing()

    def _save_ended(self, *, wait: bool) -> None:
        """Save the requests that ended (with `wait`, at least one); a request's error is raised once those in
        flight have ended and been saved."""
        failures: list[BaseException] = []
        for ended in self.writes.ended(wait=wait):
            request = ended.request
            for plan in request.plans:
                source_id = self.source.row_id(plan.source_row)
                left = self._unsaved.pop(source_id, 1) - 1
                if left:
                    self._unsaved[source_id] = left
            if ended.error is not None:
                failures.append(ended.error)
                continue
            assert ended.results is not None
            self.saver.save(list(zip(request.plans, ended.results, strict=True)), read=len(request.plans))
            request.ticket.requests -= 1
            if request.ticket.requests == 0:
                request.ticket.on_saved()
        if failures:
            self.writes.stop()
            while self.writes.outstanding():
                with suppress(BaseException):  # the first error is the run's
                    self._save_ended(wait=True)
            raise failures[0]

    def settle(self) -> None:
        """Wait for every write handed to the pipeline and save its results."""
        saved = False
        while self.writes.outstanding():
            self._save_ended(wait=True)
            saved = True
        self.writes.close()
        if saved:
            self._record_pacing()
            # As between pages: keep the mapping's lock, and show the progress the last writes made.
            self.on_page()

    def abandon(self) -> None:
        """The run stops on an error: start no further write, save those in flight (their records are written)."""
        self.writes.stop()
        while self.writes.outstanding():
            with suppress(Exception):
                self._save_ended(wait=True)
        self.writes.close()

    def _throttle_wait(self) -> float:
        return sum(client.throttle_wait_seconds for client in self._clients)

    def _record_pacing(self) -> None:
        """Show on the job how many requests it sends at once now and how long throttling made it wait (added, as
        a shared full synchronization's helpers write to the same job)."""
        waited = self._throttle_wait()
        SyncJob.objects.filter(pk=self.job.pk).update(
            concurrency=self.target_client.parallelism(),
            throttle_wait_seconds=F("throttle_wait_seconds") + (waited - self._waited),
        )
        self._waited = waited

    def _plan_couplings(self, plans: list[Plan], matched: dict[Any, tuple[Any, Row]]) -> None:
        """Note what this preview would couple (matches and inserts), for the later previews of the chain."""
        source, target = self.ctx.source, self.ctx.target
        mapping_id = self.job.table_mapping_id
        for plan in plans:
            source_id = source.row_id(plan.source_row)
            if source_id in matched:
                coupling, target_row = matched[source_id]
                target_id = getattr(coupling, target.coupling_attr("id"))
                bc_values = target_row if source.is_dataverse else plan.source_row
            elif plan.action == Action.INSERT:
                reserved = getattr(plan.coupling, target.coupling_attr("id"), None) if plan.coupling else None
                target_id = reserved or f"new {target.label} record for {source.row_name(plan.source_row)!r}"
                bc_values = plan.values if source.is_dataverse else plan.source_row
            elif plan.action == Action.UPDATE and plan.coupling is not None:
                self.planned.wrote(mapping_id, target.kind, getattr(plan.coupling, target.coupling_attr("id")))
                continue
            else:
                continue
            bc_id, dataverse_id = (target_id, source_id) if source.is_dataverse else (source_id, target_id)
            self.planned.add(mapping_id, PlannedPair(bc_id, dataverse_id, dict(bc_values)))
            if plan.action in (Action.INSERT, Action.UPDATE):
                self.planned.wrote(mapping_id, target.kind, target_id)

    def _templates_for(self, source_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
        """The values of the first template whose filter each record matches, for the records a page may create.

        The source service evaluates each filter (OData, exactly as it reads), on the page's ids: one request per
        template with a filter, and only for pages that may create records.
        """
        chosen: dict[UUID, dict[str, Any]] = {}
        remaining = list(source_ids)
        for source_filter, values in self.templates:
            if not remaining:
                break
            if not source_filter:
                matched = set(remaining)
            else:
                try:
                    matched = set(
                        self.source_client.read_by_ids(
                            self.source.entity_set, remaining, select=[self.source.id_field], filter=source_filter
                        )
                    )
                except ConnectorError as exc:
                    raise SourceUnreadable(
                        f"The filter {source_filter!r} of a template for new records could not be evaluated on "
                        f"{self.source.label} {self.source.entity_set}: {exc}"
                    ) from exc
            for source_id in remaining:
                if source_id in matched:
                    chosen[source_id] = values
            remaining = [source_id for source_id in remaining if source_id not in matched]
        return chosen

    def _prepare_initial_values(self) -> None:
        """Keep the initial-value rules whose target column the target's metadata lets us write (once per run)."""
        self._initial_prepared = True
        target = self.ctx.target
        try:
            columns = self.target_client.table_info(target.entity_set).columns
        except ConnectorError as exc:
            logger.warning("No metadata of %s, so no initial values for it: %s", target.entity_set, exc)
            return
        writable = [
            rule
            for rule in self._initial_candidates
            if rule.target_field in columns and not columns[rule.target_field].read_only
        ]
        self.ctx = dataclasses.replace(self.ctx, initial_rules=writable)

    def check_cancelled(self) -> None:
        """Stop with RunCancelled when someone asked the job to stop (checked before a page is written)."""
        if SyncJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise RunCancelled()


def _plan_context(job: SyncJob, source: Side, target: Side, rules: list[FieldRule]) -> PlanContext:
    """What the planner needs to know of the run: direction, rules, and the mapping's policies for this kind of run."""
    mapping: TableMapping = job.table_mapping
    return PlanContext(
        direction=job.direction,
        source=source,
        target=target,
        rules=rules,
        bidirectional_mapping=mapping.direction == Direction.BIDIRECTIONAL,
        # As BC: full synchronization and "synchronize now" on chosen records create what is missing.
        only_coupled=mapping.sync_only_coupled and job.kind == JobKind.MODIFIED,
        force=job.kind in (JobKind.RECORDS, JobKind.FULL),
        update_policy=mapping.update_conflict_resolution,
        deletion_policy=mapping.deletion_conflict_resolution,
        new_record_values=(
            {**mapping.dataverse_new_record_values, **company_stamp_on_insert(mapping)}
            if target.is_dataverse
            else dict(mapping.bc_new_record_values)
        ),
    )


def _selects(
    source: Side,
    target: Side,
    rules: list[FieldRule],
    initial_rules: list[FieldRule],
    match_groups: list[MatchGroup],
) -> tuple[list[str], list[str]]:
    """The columns a run reads on each side: ids, modified-on and names, and what the rules and match fields use."""
    source_select = sorted(
        {source.id_field, source.modified_field, source.name_field, *source_fields(rules)}
        | set(source_fields(initial_rules))
        | {fm.field_of(source.kind) for group in match_groups for fm in group}
    )
    target_select = sorted(
        {target.id_field, target.modified_field, target.name_field}
        | {rule.current_key(target) for rule in rules}
        | {fm.field_of(target.kind) for group in match_groups for fm in group}
    )
    return source_select, target_select
