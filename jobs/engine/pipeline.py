"""One run of one table mapping in one direction, page by page (architecture.md "The engine").

Per page: read changed source rows -> load their couplings (one query) -> read coupled counterparts (one
request or batch) -> plan each record (pure) -> write the page in bulk -> save couplings, errors and counters in
one transaction. A preview stops after planning.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from connectors.errors import same_error
from connectors.types import ConnectorError, RemoteClient, WriteOperation, WriteResult
from coupling.choices import SyncResult
from coupling.matching import match_key
from coupling.models import AmbiguousMatch, Coupling
from coupling.services import ambiguous_matches_settle
from jobs.choices import ErrorClass, JobKind
from jobs.engine.coupling_rows import insert_couplings, update_couplings
from jobs.engine.planner import Action, Plan, PlanContext, plan_record
from jobs.engine.sides import Side, sides_for
from jobs.engine.values import LookupResolver, compile_initial_rules, compile_rules, source_fields
from jobs.models import COUNTER_FIELDS, SyncError, SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

# Re-read a little before the watermark: many rows can share a timestamp, and Dataverse has whole seconds only.
WATERMARK_OVERLAP = timedelta(seconds=1)
PREVIEW_SAMPLE_SIZE = 50
ID_CHUNK = 500
BULK_BATCH = 500
MATCH_VALUES_PER_REQUEST = 50


class RunCancelled(Exception):
    pass


class SourceUnreadable(Exception):
    """The source could not be read: the run fails; it is never reported as '0 changes'."""


@dataclass
class RunOutcome:
    counts: Counter = field(default_factory=Counter)
    latest_modified: datetime | None = None
    preview: dict = field(default_factory=lambda: {"counts": {}, "sample": []})


class DirectionRun:
    """Synchronize one mapping in one direction for one SyncJob row."""

    def __init__(self, job: SyncJob, *, bc_client: RemoteClient, dataverse_client: RemoteClient, on_page=None):
        self.job = job
        self.on_page = on_page or (lambda: None)  # e.g. renew the mapping's run lock
        self.mapping: TableMapping = job.table_mapping
        self.direction = job.direction
        self.source, self.target = sides_for(self.mapping, self.direction)
        self.source_client = dataverse_client if self.source.is_dataverse else bc_client
        self.target_client = dataverse_client if self.target.is_dataverse else bc_client
        self.rules = compile_rules(self.mapping, self.direction, self.source, self.target)
        force = job.kind in (JobKind.RECORDS, JobKind.FULL)
        self.ctx = PlanContext(
            direction=self.direction,
            source=self.source,
            target=self.target,
            rules=self.rules,
            bidirectional_mapping=self.mapping.direction == Direction.BIDIRECTIONAL,
            # As BC: full synchronization and "synchronize now" on chosen records create what is missing.
            only_coupled=self.mapping.sync_only_coupled and job.kind == JobKind.MODIFIED,
            force=force,
            update_policy=self.mapping.update_conflict_resolution,
            deletion_policy=self.mapping.deletion_conflict_resolution,
            new_record_values=dict(
                self.mapping.dataverse_new_record_values
                if self.target.is_dataverse
                else self.mapping.bc_new_record_values
            ),
        )
        # Checked against the target's metadata only when a page may create records (see _prepare_initial_values):
        # an incremental run that only updates does not download it.
        self._initial_candidates = compile_initial_rules(self.mapping, self.direction, self.source, self.target)
        self._initial_prepared = not self._initial_candidates
        # Match criteria, grouped by priority: [(priority, [(source field, target field, case-sensitive)])].
        self.match_criteria = match_criteria(self.mapping, self.source)
        self.forced_ctx = dataclasses.replace(self.ctx, force=True)
        self.source_select = sorted(
            {self.source.id_field, self.source.modified_field, self.source.name_field, *source_fields(self.rules)}
            | set(source_fields(self._initial_candidates))
            | {source for _, fields in self.match_criteria for source, _, _ in fields}
        )
        self.target_select = sorted(
            {self.target.id_field, self.target.modified_field, self.target.name_field}
            | {rule.current_key(self.target) for rule in self.rules}
            | {target for _, fields in self.match_criteria for _, target, _ in fields}
        )
        self.lookups = LookupResolver(self.rules, self.source, bc_client, dataverse_client)
        # Ambiguous matches of records this run couples are settled: known once, so pages without any cost nothing.
        self._ambiguous_listed = AmbiguousMatch.objects.filter(table_mapping=self.mapping).exists()
        self.outcome = RunOutcome()
        # Records already processed as failed-not-skipped retries, left out when the changed pages bring them again.
        # Only these are remembered: pages of one read are disjoint, so memory does not grow with the table.
        self._retried: set = set()

    def _prepare_initial_values(self) -> None:
        """Keep the initial-value rules whose target column the target's metadata lets us write (once per run)."""
        self._initial_prepared = True
        try:
            columns = self.target_client.table_info(self.target.entity_set).columns
        except ConnectorError as exc:
            logger.warning("No metadata of %s, so no initial values for it: %s", self.target.entity_set, exc)
            return
        writable = [
            rule
            for rule in self._initial_candidates
            if rule.target_field in columns and not columns[rule.target_field].read_only
        ]
        self.ctx = dataclasses.replace(self.ctx, initial_rules=writable)
        self.forced_ctx = dataclasses.replace(self.forced_ctx, initial_rules=writable)

    # -- reading ---------------------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        for rows in self.source_pages():
            self.process_page(rows)
        return self.finish()

    def source_pages(self):
        """Yield the source rows to process, a page at a time; failed-not-skipped records come first."""
        self.run_start = timezone.now()
        self._estimate_total()
        if self.job.kind == JobKind.RECORDS:
            # Selected records outside the mapping's filter are not synchronized (as BC: not offered at all).
            ids = [uuid.UUID(str(i)) for i in self.job.record_ids]
            for start in range(0, len(ids), ID_CHUNK):
                rows = self._read_by_ids(ids[start : start + ID_CHUNK], filter=self.source.table_filter or None)
                yield self._noted(list(rows.values()))
            return
        if self.job.kind != JobKind.FULL:
            yield from (self._noted(rows) for rows in self._failed_not_skipped())
        yield from (self._noted(rows) for rows in self._read_changed())

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
        SyncJob.objects.filter(pk=self.job.pk).update(progress_total=total)

    def finish(self) -> RunOutcome:
        # Rows changed during the run are read again next time: the watermark goes no further than the run's
        # start, on the source server's clock (ours may be ahead of it; its modified-on values are on its clock).
        started = self.source_client.server_time_at(self.run_start)
        if self.outcome.latest_modified and self.outcome.latest_modified > started:
            self.outcome.latest_modified = started
        return self.outcome

    def _noted(self, rows: list[dict]) -> list[dict]:
        """Track the latest modified-on read, for the watermark."""
        for row in rows:
            modified = self.source.row_modified(row)
            if modified and (self.outcome.latest_modified is None or modified > self.outcome.latest_modified):
                self.outcome.latest_modified = modified
        return rows

    def _watermark(self) -> datetime | None:
        if self.job.kind == JobKind.FULL:
            return None
        mark = self.mapping.dataverse_watermark if self.source.is_dataverse else self.mapping.bc_watermark
        return mark - WATERMARK_OVERLAP if mark else None

    def _read_changed(self):
        try:
            pages = self.source_client.read_pages(
                self.source.entity_set,
                filter=self.source.table_filter or None,
                modified_since=self._watermark(),
                select=self.source_select,
            )
            for page in pages:
                yield [row for row in page.rows if self.source.row_id(row) not in self._retried]
        except ConnectorError as exc:
            raise SourceUnreadable(f"{self.source.label} {self.source.entity_set} could not be read: {exc}") from exc

    def _read_by_ids(self, ids: list, filter: str | None = None) -> dict:
        try:
            return self.source_client.read_by_ids(self.source.entity_set, ids, select=self.source_select, filter=filter)
        except ConnectorError as exc:
            raise SourceUnreadable(f"{self.source.label} {self.source.entity_set} could not be read: {exc}") from exc

    def _failed_not_skipped(self):
        """Failed-but-not-skipped records are retried at every run, changed or not (as BC)."""
        result_field = Coupling.result_field(self.direction)
        id_attr = self.source.coupling_attr("id")
        failed = list(
            Coupling.objects.filter(
                table_mapping=self.mapping, skipped=False, **{result_field: SyncResult.FAILURE}
            ).values_list(id_attr, flat=True)
        )
        failed = [i for i in failed if i]
        for start in range(0, len(failed), ID_CHUNK):
            rows = self._read_by_ids(failed[start : start + ID_CHUNK], filter=self.source.table_filter or None)
            self._retried.update(rows)
            yield list(rows.values())

    # -- one page ----------------------------------------------------------------------------------------------

    def process_page(self, rows: list[dict]) -> None:
        self.on_page()
        if not rows:
            self._check_cancelled()
            return
        ids = [self.source.row_id(row) for row in rows]

        couplings = self._load_couplings(ids)
        target_rows = self._read_counterparts(couplings.values())
        if not self._initial_prepared and any(i not in couplings or couplings[i].pending for i in ids):
            self._prepare_initial_values()  # this page may create records
        # Before anything of the page is written (matching commits couplings): a cancel asked while the page and
        # its counterparts were read stops the run here.
        self._check_cancelled()
        matched, ambiguous = self._match_uncoupled(
            [row for row, i in zip(rows, ids, strict=True) if i not in couplings]
        )
        for source_id, (coupling, target_row) in matched.items():
            couplings[source_id] = coupling
            target_rows[getattr(coupling, self.target.coupling_attr("id"))] = target_row
        lookups = self.lookups
        lookups.prepare(rows)
        plans = []
        for row, source_id in zip(rows, ids, strict=True):
            if source_id in ambiguous:
                plans.append(self._ambiguous_plan(row, ambiguous[source_id]))
                continue
            coupling = couplings.get(source_id)
            target_id = getattr(coupling, self.target.coupling_attr("id")) if coupling else None
            # A record coupled by matching just now takes the source's values, as after match-based coupling.
            ctx = self.forced_ctx if source_id in matched else self.ctx
            plans.append(plan_record(ctx, row, coupling, target_rows.get(target_id), lookups))

        if self.job.dry_run:
            self._tally_preview(plans)
        else:
            self._write(plans)
        SyncJob.objects.filter(pk=self.job.pk).update(progress_done=F("progress_done") + len(rows))

    def _match_uncoupled(self, rows: list[dict]) -> tuple[dict, dict]:
        """Couple uncoupled source records to the one uncoupled target record their match fields agree with.

        Business Central matches uncoupled records during a sync only for currencies; here every mapping with match
        criteria does, so a scheduled run couples the same company instead of skipping it or creating a duplicate.
        Two requests per page and criterion, when the page has candidates: a match must be unique both ways
        among the uncoupled records of both tables.

        Returns the matches ({source id: (new coupling, target row)}) and the ambiguous records ({source id:
        [target rows]}): those that match several target records, or share their one match with other uncoupled
        records, at some priority and match uniquely at none. Business Central creates a new record for these,
        one more duplicate beside the ones that made the match ambiguous; here they fail and wait to be coupled.
        """
        if not rows or not self.match_criteria:
            return {}, {}
        source_keys = {}
        for row in rows:
            for priority, fields in self.match_criteria:
                key = match_key(row, [(source, case) for source, _, case in fields])
                if key is not None:
                    source_keys.setdefault(self.source.row_id(row), []).append((priority, key))
        if not source_keys:
            return {}, {}
        candidates = self._match_candidates(rows)
        coupled_targets = set(
            Coupling.objects.filter(
                table_mapping=self.mapping,
                **{f"{self.target.coupling_attr('id')}__in": [self.target.row_id(r) for r in candidates]},
            ).values_list(self.target.coupling_attr("id"), flat=True)
        )
        candidates = [r for r in candidates if self.target.row_id(r) not in coupled_targets]
        if not candidates:
            return {}, {}
        rivals = self._uncoupled_rivals(rows, set(source_keys))
        matched, taken, ambiguous = {}, set(), {}
        for priority, fields in self.match_criteria:
            index: dict = {}
            for row in candidates:
                key = match_key(row, [(target, case) for _, target, case in fields])
                if key is not None:
                    index.setdefault(key, []).append(row)
            claimed_elsewhere = Counter(
                match_key(row, [(source, case) for source, _, case in fields]) for row in rivals
            )
            wanted: dict = {}
            for source_id, keys in source_keys.items():
                for key_priority, key in keys:
                    if key_priority == priority and source_id not in matched:
                        wanted.setdefault(key, []).append(source_id)
            for key, source_ids in wanted.items():
                targets = [r for r in index.get(key, []) if self.target.row_id(r) not in taken]
                if len(source_ids) == 1 and len(targets) == 1 and not claimed_elsewhere[key]:
                    matched[source_ids[0]] = targets[0]
                    taken.add(self.target.row_id(targets[0]))
                elif targets:
                    for source_id in source_ids:
                        ambiguous.setdefault(source_id, targets)
        ambiguous = {source_id: targets for source_id, targets in ambiguous.items() if source_id not in matched}
        if ambiguous and not self.job.dry_run:
            self._record_ambiguous(rows, ambiguous)
        if not matched:
            return {}, ambiguous
        rows_by_id = {self.source.row_id(row): row for row in rows}
        result = {}
        for source_id, target_row in matched.items():
            coupling = Coupling(
                table_mapping=self.mapping,
                **{
                    self.source.coupling_attr("id"): source_id,
                    self.target.coupling_attr("id"): self.target.row_id(target_row),
                    self.source.coupling_attr("name"): self.source.row_name(rows_by_id[source_id]),
                    self.target.coupling_attr("name"): self.target.row_name(target_row),
                },
            )
            result[source_id] = (coupling, target_row)
        if not self.job.dry_run:
            with transaction.atomic():
                insert_couplings([c for c, _ in result.values()])
                self._settle_ambiguous([c for c, _ in result.values()])
                SyncJob.objects.filter(pk=self.job.pk).update(coupled=F("coupled") + len(result))
        self.outcome.counts["coupled"] += len(result)
        return result, ambiguous

    def _settle_ambiguous(self, couplings: list[Coupling]) -> None:
        if self._ambiguous_listed and couplings:
            ambiguous_matches_settle(
                mapping=self.mapping,
                bc_ids=[c.bc_id for c in couplings],
                dataverse_ids=[c.dataverse_id for c in couplings],
            )

    def _record_ambiguous(self, rows: list[dict], ambiguous: dict) -> None:
        """List each ambiguous record with its candidates, where an administrator couples it by a click."""
        self._ambiguous_listed = True
        rows_by_id = {self.source.row_id(row): row for row in rows}
        entries = [
            AmbiguousMatch(
                table_mapping=self.mapping,
                side="dataverse" if self.source.is_dataverse else "bc",
                record_id=source_id,
                record_name=self.source.row_name(rows_by_id[source_id]),
                candidates=[
                    {"id": str(self.target.row_id(target)), "name": self.target.row_name(target)} for target in targets
                ],
                job_id=self.job.pk,
            )
            for source_id, targets in ambiguous.items()
        ]
        AmbiguousMatch.objects.bulk_create(
            entries,
            update_conflicts=True,
            unique_fields=["table_mapping", "side", "record_id"],
            update_fields=["record_name", "candidates", "job_id"],
        )

    def _ambiguous_plan(self, row: dict, targets: list[dict]) -> Plan:
        names = ", ".join(sorted(f"'{self.target.row_name(t)}'" for t in targets)[:5])
        return Plan(
            Action.FAIL,
            row,
            error_class=ErrorClass.AMBIGUOUS_MATCH,
            message=(
                f"The match fields do not single out one {self.target.label} record for this record: it matches "
                f"{names}{' and more' if len(targets) > 5 else ''}, or shares its match with another record. "
                f"Nothing was coupled and no new record was created beside them. Couple it by hand (Couplings, "
                f"ambiguous matches), then synchronize it again."
            ),
        )

    def _match_candidates(self, rows: list[dict], *, in_source: bool = False) -> list[dict]:
        """Target records (or other source records) whose first match field equals a value of the page, within
        that side's filter: one request per criterion."""
        side, client, select = (
            (self.source, self.source_client, self.source_select)
            if in_source
            else (self.target, self.target_client, self.target_select)
        )
        found = {}
        for _, fields in self.match_criteria:
            source_field, target_field, _ = fields[0]
            field = source_field if in_source else target_field
            values = sorted(
                {str(row[source_field]).strip() for row in rows if str(row.get(source_field) or "").strip()}
            )
            for start in range(0, len(values), MATCH_VALUES_PER_REQUEST):
                chunk = values[start : start + MATCH_VALUES_PER_REQUEST]
                condition = " or ".join(f"{field} eq '{v.replace(chr(39), chr(39) * 2)}'" for v in chunk)
                flt = f"({condition}) and ({side.table_filter})" if side.table_filter else condition
                try:
                    for page in client.read_pages(side.entity_set, filter=flt, select=select):
                        for row in page.rows:
                            found[side.row_id(row)] = row
                except ConnectorError as exc:
                    raise SourceUnreadable(f"{side.label} could not be searched for matches: {exc}") from exc
        return list(found.values())

    def _uncoupled_rivals(self, rows: list[dict], page_ids: set) -> list[dict]:
        """Uncoupled source records outside the page that share a match value with it: a match is unique only if
        no other uncoupled record of the whole table could claim it, wherever the pages happen to split."""
        others = [r for r in self._match_candidates(rows, in_source=True) if self.source.row_id(r) not in page_ids]
        id_attr = self.source.coupling_attr("id")
        coupled = set(
            Coupling.objects.filter(
                table_mapping=self.mapping, pending=False, **{f"{id_attr}__in": [self.source.row_id(r) for r in others]}
            ).values_list(id_attr, flat=True)
        )
        return [r for r in others if self.source.row_id(r) not in coupled]

    def _load_couplings(self, ids: list) -> dict:
        id_attr = self.source.coupling_attr("id")
        couplings = Coupling.objects.filter(table_mapping=self.mapping, **{f"{id_attr}__in": ids})
        return {getattr(c, id_attr): c for c in couplings}

    def _read_counterparts(self, couplings) -> dict:
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

    def _check_cancelled(self) -> None:
        if SyncJob.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise RunCancelled()

    # -- preview -----------------------------------------------------------------------------------------------

    def _tally_preview(self, plans: list[Plan]) -> None:
        preview = self.outcome.preview
        for plan in plans:
            if _COUNTER_FOR[plan.action]:
                self.outcome.counts[_COUNTER_FOR[plan.action]] += 1
            key = "conflicts" if plan.error_class == ErrorClass.CONFLICT else plan.action.value
            preview["counts"][key] = preview["counts"].get(key, 0) + 1
            if (
                plan.action in (Action.INSERT, Action.UPDATE, Action.FAIL)
                and len(preview["sample"]) < PREVIEW_SAMPLE_SIZE
            ):
                preview["sample"].append(
                    {
                        "action": plan.action.value,
                        "record": self.source.row_name(plan.source_row),
                        "record_id": str(self.source.row_id(plan.source_row)),
                        "message": plan.message,
                        "diffs": [
                            {"field": field, "old": _jsonable(old), "new": _jsonable(new)}
                            for field, old, new in _plan_diffs(plan)
                        ],
                    }
                )

    # -- writing -----------------------------------------------------------------------------------------------

    def _write(self, plans: list[Plan]) -> None:
        inserts = [p for p in plans if p.action == Action.INSERT]
        self._reserve_inserts(inserts)
        operations, planned = [], []
        for plan in plans:
            if plan.action == Action.INSERT:
                operations.append(self._insert_operation(plan))
                planned.append(plan)
            elif plan.action == Action.UPDATE:
                operations.append(
                    WriteOperation(
                        kind="update",
                        entity_set=self.target.entity_set,
                        ref=str(len(operations)),
                        values=plan.values,
                        record_id=self.target.row_id(plan.target_row),
                        etag=self.target.row_etag(plan.target_row) or None,
                    )
                )
                planned.append(plan)
        results = self.target_client.write_many(operations) if operations else []
        self._save(plans, dict(zip([id(p) for p in planned], results, strict=True)))

    def _insert_operation(self, plan: Plan) -> WriteOperation:
        ref = str(id(plan))
        if self.target.is_dataverse:
            # Dataverse accepts our id: upsert by it, so a rerun after a crash updates instead of duplicating.
            return WriteOperation(
                kind="upsert",
                entity_set=self.target.entity_set,
                ref=ref,
                values=plan.values,
                record_id=plan.coupling.dataverse_id,
            )
        return WriteOperation(kind="create", entity_set=self.target.entity_set, ref=ref, values=plan.values)

    def _reserve_inserts(self, inserts: list[Plan]) -> None:
        """Record pending couplings (with the target id chosen, where the API allows) before writing anything.

        Committed on their own, in bulk: whatever happens to the write, a rerun finds them and cannot insert twice.
        """
        if not inserts:
            return
        source_attr = self.source.coupling_attr("id")
        interrupted, new, changed = [], [], []  # interrupted: pending BC inserts of an earlier run, maybe written
        for plan in inserts:
            coupling = plan.coupling
            if coupling is None:
                coupling = Coupling(table_mapping=self.mapping, **{source_attr: self.source.row_id(plan.source_row)})
                new.append(coupling)
            else:
                changed.append(coupling)
                # A failed write records its error; an interrupted one (killed worker, unknown outcome) does not.
                if coupling.pending and not coupling.last_error(self.direction) and not self.target.is_dataverse:
                    interrupted.append(plan)
            if plan.restore:
                setattr(coupling, self.target.coupling_attr("id"), None)
                coupling.created_at = timezone.now()  # the recovery window starts with this reservation
            if self.target.is_dataverse and coupling.dataverse_id is None:
                coupling.dataverse_id = uuid.uuid4()
            coupling.pending = True
            setattr(coupling, self.source.coupling_attr("name"), self.source.row_name(plan.source_row))
            plan.coupling = coupling
        with transaction.atomic():
            insert_couplings(new)
            update_couplings(changed, ["bc_id", "dataverse_id", "pending", "bc_name", "dataverse_name", "created_at"])
        self._recover_interrupted_bc_inserts(interrupted)

    def _recover_interrupted_bc_inserts(self, plans: list[Plan]) -> None:
        """Find Business Central records an interrupted run created before it could confirm them.

        Business Central chooses its own ids, so the record is looked up by its name among the records modified
        since the coupling was reserved; exactly one match is taken as ours and updated instead of created again.
        """
        for plan in plans:
            name = plan.values.get(self.target.name_field)
            if not name:
                continue
            literal = str(name).replace("'", "''")
            try:
                pages = self.target_client.read_pages(
                    self.target.entity_set,
                    filter=f"{self.target.name_field} eq '{literal}'",
                    modified_since=self.target_client.server_time_at(plan.coupling.created_at) - WATERMARK_OVERLAP,
                    select=self.target_select,
                )
                found = [row for page in pages for row in page.rows]
            except ConnectorError as exc:
                logger.warning("Could not look for an interrupted insert of %s: %s", name, exc)
                continue
            taken = Coupling.objects.filter(
                table_mapping=self.mapping, bc_id__in=[self.target.row_id(row) for row in found]
            ).exists()
            if len(found) == 1 and not taken:
                plan.action = Action.UPDATE
                plan.target_row = found[0]
                plan.coupling.bc_id = self.target.row_id(found[0])

    def _save(self, plans: list[Plan], results: dict[int, WriteResult]) -> None:
        counts = Counter()
        errors = []
        to_update = []
        to_delete = []
        to_reserve = []
        now = timezone.now()
        for plan in plans:
            result = results.get(id(plan))
            if plan.action in (Action.INSERT, Action.UPDATE) and result is not None and not result.ok:
                error = result.error
                plan.outcome_unknown = bool(getattr(error, "outcome_unknown", False))
                plan.error_class = _error_class(error)
                verb = "Creating" if plan.action == Action.INSERT else "Updating"
                plan.message = f"{verb} the {self.target.label} record failed: {error.message}"
                detail = error.detail()
                outcome = Action.FAIL
            else:
                detail = ""
                outcome = plan.action
            counter = _COUNTER_FOR[outcome]
            if plan.restore and outcome == Action.INSERT:
                counter = "inserted"
            if counter:
                counts[counter] += 1
            coupling = plan.coupling
            if outcome in (Action.INSERT, Action.UPDATE):
                self._mark_success(coupling, plan, result)
                to_update.append(coupling)
            elif outcome == Action.UNCHANGED and coupling is not None:
                self._remember_source(coupling, plan.source_row)
                if coupling.pending and plan.target_row is not None:
                    # An interrupted run wrote this record before it could say so: confirm the coupling now.
                    self._remember_target(coupling, plan.target_row)
                    coupling.pending = False
                    setattr(coupling, Coupling.error_field(self.direction), "")
                    self._set_result(coupling, SyncResult.SUCCESS)
                to_update.append(coupling)
            elif outcome == Action.UNCOUPLE:
                to_delete.append(coupling.pk)
            elif outcome == Action.FAIL:
                if coupling is not None:
                    self._mark_failure(coupling, plan)
                    to_update.append(coupling)
                elif plan.error_class != ErrorClass.AMBIGUOUS_MATCH:
                    # An uncoupled record that could not be created (e.g. its currency is not coupled yet): keep a
                    # failed reservation, so it is retried at every run like any failed record, changed or not.
                    # (An ambiguous match waits in the ambiguous matches instead: a reservation would insert it.)
                    to_reserve.append(self._failed_reservation(plan))
                errors.append(self._error_row(plan, detail, now))
        with transaction.atomic():
            insert_couplings(to_reserve)
            if to_update:
                update_couplings(to_update, _COUPLING_FIELDS)
                self._settle_ambiguous([c for c in to_update if not c.pending])
            if to_delete:
                Coupling.objects.filter(pk__in=to_delete).delete()
            if errors:
                SyncError.objects.bulk_create(errors, batch_size=BULK_BATCH)
            if counts:
                SyncJob.objects.filter(pk=self.job.pk).update(**{k: F(k) + v for k, v in counts.items()})
        self.outcome.counts.update(counts)

    def _failed_reservation(self, plan: Plan) -> Coupling:
        coupling = Coupling(
            table_mapping=self.mapping,
            pending=True,
            **{
                Coupling.error_field(self.direction): plan.message,
                self.source.coupling_attr("id"): self.source.row_id(plan.source_row),
                self.source.coupling_attr("name"): self.source.row_name(plan.source_row),
            },
        )
        if self.target.is_dataverse:
            coupling.dataverse_id = uuid.uuid4()
        self._set_result(coupling, SyncResult.FAILURE)
        return coupling

    def _remember_source(self, coupling: Coupling, row: dict) -> None:
        setattr(coupling, self.source.coupling_attr("etag"), self.source.row_etag(row))
        setattr(coupling, self.source.coupling_attr("modified_on"), self.source.row_modified(row))
        setattr(coupling, self.source.coupling_attr("name"), self.source.row_name(row))

    def _remember_target(self, coupling: Coupling, row: dict) -> None:
        setattr(coupling, self.target.coupling_attr("etag"), self.target.row_etag(row))
        setattr(coupling, self.target.coupling_attr("modified_on"), self.target.row_modified(row))
        setattr(coupling, self.target.coupling_attr("name"), self.target.row_name(row))

    def _mark_success(self, coupling: Coupling, plan: Plan, result: WriteResult) -> None:
        self._remember_source(coupling, plan.source_row)
        target_row = result.row or {}
        if result.record_id:
            setattr(coupling, self.target.coupling_attr("id"), result.record_id)
        if not plan.target_had_changes:
            # Our own write is not a change: store the version it produced (echo suppression). When the target
            # had changes of its own, the stored version stays older, so the reverse pass still carries them over.
            setattr(coupling, self.target.coupling_attr("etag"), result.etag or self.target.row_etag(target_row))
            setattr(
                coupling,
                self.target.coupling_attr("modified_on"),
                result.modified_on or self.target.row_modified(target_row),
            )
        name = target_row.get(self.target.name_field) or plan.values.get(self.target.name_field)
        if name:
            setattr(coupling, self.target.coupling_attr("name"), str(name)[:250])
        coupling.pending = False
        setattr(coupling, Coupling.error_field(self.direction), "")
        self._set_result(coupling, SyncResult.SUCCESS)

    def _mark_failure(self, coupling: Coupling, plan: Plan) -> None:
        repeated = coupling.last_result(self.direction) == SyncResult.FAILURE and same_error(
            coupling.last_error(self.direction), plan.message
        )
        retryable = plan.error_class in (ErrorClass.TRANSIENT, ErrorClass.THROTTLED) or plan.outcome_unknown
        if repeated and not retryable and settings.SYNC_SKIP_REPEATED_FAILURES:
            coupling.skipped = True
        # A write whose outcome is unknown may have landed: leave no error, so the next run looks for it first.
        error = "" if (plan.outcome_unknown and coupling.pending) else plan.message
        setattr(coupling, Coupling.error_field(self.direction), error)
        self._set_result(coupling, SyncResult.FAILURE)

    def _set_result(self, coupling: Coupling, result: str) -> None:
        if self.direction == Direction.TO_DATAVERSE:
            coupling.last_result_to_dataverse = result
            coupling.last_job_to_dataverse = self.job.pk
        else:
            coupling.last_result_from_dataverse = result
            coupling.last_job_from_dataverse = self.job.pk

    def _error_row(self, plan: Plan, detail: str, now) -> SyncError:
        source_id = self.source.row_id(plan.source_row)
        target_id = getattr(plan.coupling, self.target.coupling_attr("id")) if plan.coupling else None
        diffs = "\n".join(f"{f}: {old!r} -> {new!r}" for f, old, new in _plan_diffs(plan))
        names = {
            self.source.coupling_attr("name"): self.source.row_name(plan.source_row),
            self.target.coupling_attr("name"): getattr(plan.coupling, self.target.coupling_attr("name"), "")
            if plan.coupling
            else "",
        }
        return SyncError(
            job=self.job,
            table_mapping=self.mapping,
            direction=self.direction,
            bc_id=target_id if self.source.is_dataverse else source_id,
            dataverse_id=source_id if self.source.is_dataverse else target_id,
            error_class=plan.error_class or ErrorClass.INTERNAL,
            message=plan.message,
            detail="\n".join(part for part in (detail, diffs) if part),
            **names,
        )


_COUNTER_FOR = {
    Action.INSERT: "inserted",
    Action.UPDATE: "modified",
    Action.UNCHANGED: "unchanged",
    Action.SKIP: "skipped",
    Action.IGNORE: "",
    Action.UNCOUPLE: "uncoupled",
    Action.FAIL: "failed",
}
assert set(filter(None, _COUNTER_FOR.values())) <= set(COUNTER_FIELDS)

_COUPLING_FIELDS = [
    "bc_id",
    "dataverse_id",
    "bc_name",
    "dataverse_name",
    "bc_etag",
    "dataverse_etag",
    "bc_modified_on",
    "dataverse_modified_on",
    "last_result_to_dataverse",
    "last_result_from_dataverse",
    "last_job_to_dataverse",
    "last_job_from_dataverse",
    "last_error_to_dataverse",
    "last_error_from_dataverse",
    "skipped",
    "pending",
]


def match_criteria(mapping: TableMapping, source: Side) -> list[tuple[int, list[tuple[str, str, bool]]]]:
    """The mapping's match fields as (source field, target field, case-sensitive), grouped by priority."""
    groups: dict[int, list] = {}
    for fm in mapping.field_mappings.match_criteria():
        pair = (fm.dataverse_field, fm.bc_field) if source.is_dataverse else (fm.bc_field, fm.dataverse_field)
        groups.setdefault(fm.match_priority, []).append((*pair, fm.case_sensitive_matching))
    return sorted(groups.items())


def _error_class(error: ConnectorError | None) -> str:
    if error is None:
        return ErrorClass.INTERNAL
    return error.kind.value if error.kind.value in ErrorClass.values else ErrorClass.INTERNAL


def _plan_diffs(plan: Plan):
    if plan.diffs:
        return [(d.field, d.old, d.new) for d in plan.diffs]
    if plan.action == Action.INSERT:
        return [(k, None, v) for k, v in plan.values.items()]
    return []


def _jsonable(value):
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
