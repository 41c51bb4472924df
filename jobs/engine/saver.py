"""Saving a page's results (docs/architecture.md "One sync", step 8): couplings, errors and counters in one
transaction.

Each coupling keeps both sides' versions as they stand after our write, so our own writes are not seen as
changes next time (echo suppression); a failure is recorded on the coupling and as an error of the run.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from adminkit.times import admin_time
from connectors.errors import same_error
from connectors.types import ConnectorError, WriteResult
from coupling.choices import SyncResult
from coupling.models import Coupling
from jobs.choices import ErrorClass, ErrorState
from jobs.engine.backoff import retryable, schedule_retries
from jobs.engine.coupling_rows import insert_couplings, update_couplings
from jobs.engine.planner import Action, Fingerprints, Plan
from jobs.engine.sides import Row, Side
from jobs.engine.values import fingerprint
from jobs.models import COUNTER_FIELDS, SyncError, SyncJob

BULK_BATCH = 500

COUNTER_FOR = {
    Action.INSERT: "inserted",
    Action.UPDATE: "modified",
    Action.UNCHANGED: "unchanged",
    Action.SKIP: "skipped",
    # Uncoupled while the mapping synchronizes only coupled records: read, not synchronized. BC does not count these;
    # here they are skipped, so that the records a run read always add up to its outcomes.
    Action.IGNORE: "skipped",
    Action.UNCOUPLE: "uncoupled",
    Action.FAIL: "failed",
}
assert set(filter(None, COUNTER_FOR.values())) <= set(COUNTER_FIELDS)

COUPLING_FIELDS = [
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
    "skipped_at",
    "skipped_error_class",
    "skipped_target_etag",
    "failures_to_dataverse",
    "failures_from_dataverse",
    "pending",
    "reserved_at",
    "synced_fields",
    "first_sync_direction",
]


class PageSaver:
    def __init__(
        self, job: SyncJob, source: Side, target: Side, *, settle_ambiguous: Callable[[list[Coupling]], None]
    ) -> None:
        self.job = job
        self.direction: str = job.direction
        self.source, self.target = source, target
        self.settle_ambiguous = settle_ambiguous  # in the same transaction as the couplings it settles

    def save(self, written: Iterable[tuple[Plan, WriteResult | None]], *, read: int = 0) -> None:
        """Save a written page; `read` (its records read) is added to the job's progress with its counters."""
        counts: Counter[str] = Counter()
        errors, to_update, to_reserve = [], [], []
        transient: list[SyncError] = []  # the errors among them whose record waits a back-off before its retry
        to_delete: list[int] = []
        failed_rows: list[Row] = []
        synced_ids: list[Any] = []  # source records synchronized without error: their open errors are resolved
        now = timezone.now()
        for plan, result in written:
            # A reserved coupling whose record exists: an interrupted run's insert landed before that run could
            # save it (and count it). It is this run's insert, so crashed and resuming runs add up to what exists.
            recovered = plan.coupling is not None and plan.coupling.reserved and plan.target_row is not None
            if plan.action in (Action.INSERT, Action.UPDATE) and result is not None and not result.ok:
                plan, detail = self._failed_write(plan, result.error), _detail(result.error)
                outcome = Action.FAIL
            else:
                detail, outcome = "", plan.action
            # Written, but with a conflict held back on other fields (field-level merge): its one-sided fields
            # landed, yet the record still needs a person, so it counts as failed, with its open conflict error,
            # and its failed count matches the job's errors.
            conflict_held = outcome == Action.UPDATE and bool(plan.conflicts)
            counter = COUNTER_FOR[Action.FAIL if conflict_held else outcome]
            if recovered and outcome in (Action.UPDATE, Action.UNCHANGED):
                counter = "inserted"
            if counter:
                counts[counter] += 1
            coupling = plan.coupling
            if outcome in (Action.INSERT, Action.UPDATE):
                assert coupling is not None and result is not None
                self._succeeded(coupling, plan, result)
                to_update.append(coupling)
                if conflict_held:
                    errors.append(self._error_row(plan, self._failed(coupling, plan, now), now))
                    failed_rows.append(plan.source_row)
                else:
                    synced_ids.append(self.source.row_id(plan.source_row))
            elif outcome == Action.UNCHANGED and coupling is not None:
                # Both records already hold the same values: whatever failed before is no longer wrong.
                synced_ids.append(self.source.row_id(plan.source_row))
                self._remember(self.source, coupling, plan.source_row)
                if plan.synced:
                    coupling.remember_synced(self._as_stored(plan, {}))
                first_sync = coupling.first_sync_direction == self.direction
                if (coupling.pending or first_sync) and plan.target_row is not None:
                    # An interrupted run wrote this record before it could say so, or the chosen first sync finds
                    # both records equal already: confirm the coupling now, with both versions.
                    self._remember(self.target, coupling, plan.target_row)
                    coupling.succeed(self.direction, self.job.pk)
                elif coupling.last_result(self.direction) == SyncResult.FAILURE:
                    # A failed record found equal on both sides (fixed by hand, or a restored record whose deletion
                    # was not carried over): it succeeded, or every later run would retry it as failed.
                    coupling.succeed(self.direction, self.job.pk)
                to_update.append(coupling)
            elif outcome == Action.UNCOUPLE:
                assert coupling is not None
                to_delete.append(coupling.pk)
                synced_ids.append(self.source.row_id(plan.source_row))  # its deletion conflict is settled
            elif outcome == Action.FAIL:
                if coupling is not None:
                    detail = "\n".join(part for part in (detail, self._failed(coupling, plan, now)) if part)
                    to_update.append(coupling)
                elif plan.error_class != ErrorClass.AMBIGUOUS_MATCH:
                    # An uncoupled record that could not be created (e.g. its currency is not coupled yet): keep a
                    # failed reservation, so it is retried at every run like any failed record, changed or not.
                    # (An ambiguous match waits in the ambiguous matches instead: a reservation would insert it.)
                    to_reserve.append(self._failed_reservation(plan))
                error = self._error_row(plan, detail, now)
                errors.append(error)
                if retryable(plan.error_class, outcome_unknown=plan.outcome_unknown):
                    transient.append(error)
                failed_rows.append(plan.source_row)
        if transient:
            # Read before the records' open errors are superseded below: each new one continues their back-off.
            schedule_retries(self.job.table_mapping_id, self.direction, transient, now)
        with transaction.atomic():
            insert_couplings(to_reserve)
            if to_update:
                update_couplings(to_update, COUPLING_FIELDS)
                self.settle_ambiguous([c for c in to_update if not c.pending])
            if to_delete:
                Coupling.objects.filter(pk__in=to_delete).delete()
            if errors or synced_ids:
                self._close_errors(synced_ids, [self.source.row_id(p) for p in failed_rows], now)
            if errors:
                SyncError.objects.bulk_create(errors, batch_size=BULK_BATCH)
            if read:
                counts["progress_done"] += read
            if counts:
                SyncJob.objects.filter(pk=self.job.pk).update(**{k: F(k) + v for k, v in counts.items()})

    def _close_errors(self, synced_ids: list[Any], failed_ids: list[Any], now: datetime) -> None:
        """The records' open errors in this direction: resolved where the record synchronized, superseded where it
        failed again (its new error, saved next, is the open one). One UPDATE per batch of records, none when the
        mapping has no open error in this direction (the usual case: a clean full run of 100,000 records sent 400)."""
        mapping_id = self.job.table_mapping_id
        if not SyncError.objects.open().filter(table_mapping_id=mapping_id, direction=self.direction).exists():
            return
        for state, ids in ((ErrorState.RESOLVED_BY_SYNC, synced_ids), (ErrorState.SUPERSEDED, failed_ids)):
            ids = [record_id for record_id in ids if record_id]
            for start in range(0, len(ids), BULK_BATCH):
                batch = ids[start : start + BULK_BATCH]
                SyncError.objects.of_records(mapping_id, self.direction, batch).close(
                    state, job_id=self.job.pk, now=now
                )

    def _failed_write(self, plan: Plan, error: ConnectorError | None) -> Plan:
        verb = "Creating" if plan.action == Action.INSERT else "Updating"
        return dataclasses.replace(
            plan,
            outcome_unknown=bool(getattr(error, "outcome_unknown", False)),
            error_class=error_class_of(error),
            message=f"{verb} the {self.target.label} record failed: {error.message if error else ''}",
        )

    def _succeeded(self, coupling: Coupling, plan: Plan, result: WriteResult) -> None:
        self._remember(self.source, coupling, plan.source_row)
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
        # Only the fields written (or found equal) are remembered: a conflicting field keeps its earlier
        # fingerprints on both sides, so it is still seen as changed on both until someone resolves it.
        coupling.remember_synced(self._as_stored(plan, target_row))
        if not plan.conflicts:
            # With a conflict held back the record is not synchronized: the saver records the failure instead, so
            # the next run plans it again (and the skip policy counts the identical conflicts in a row).
            coupling.succeed(self.direction, self.job.pk)

    def _as_stored(self, plan: Plan, target_row: Row) -> Fingerprints:
        """Fingerprints of the fields the plan settled: the target's as it stored them where the write answered with
        the record (a Code upper-cased by Business Central reads back so next time, and is no change of the
        target's), else as written."""
        if not plan.synced:
            return {}
        source_values = plan.synced.get(self.source.system, {})
        target_values = plan.synced.get(self.target.system, {})
        return {
            self.source.system: {key: fingerprint(value) for key, value in source_values.items()},
            self.target.system: {key: fingerprint(target_row.get(key, value)) for key, value in target_values.items()},
        }

    def _failed(self, coupling: Coupling, plan: Plan, now: datetime) -> str:
        """Record the failure on the coupling, skipping the record per the mapping's skip policy (`record_failure`);
        returns a line for the error's log when the record is skipped."""
        return record_failure(
            coupling,
            self.job,
            plan.error_class or ErrorClass.INTERNAL,
            plan.message,
            now=now,
            outcome_unknown=plan.outcome_unknown,
            target_etag=self.target.row_etag(plan.target_row) if plan.target_row else "",
        )

    def _failed_reservation(self, plan: Plan) -> Coupling:
        coupling = Coupling(
            table_mapping=self.job.table_mapping,
            pending=True,
            **{
                self.source.coupling_attr("id"): self.source.row_id(plan.source_row),
                self.source.coupling_attr("name"): self.source.row_name(plan.source_row),
            },
        )
        if self.target.is_dataverse:
            coupling.dataverse_id = uuid.uuid4()
        setattr(coupling, Coupling.failures_field(self.direction), 1)  # its first failure, for the skip policy
        coupling.fail(self.direction, self.job.pk, plan.message, may_have_landed=False)
        return coupling

    @staticmethod
    def _remember(side: Side, coupling: Coupling, row: Row) -> None:
        """Store the version of `side`'s record as read (or written) now."""
        setattr(coupling, side.coupling_attr("etag"), side.row_etag(row))
        setattr(coupling, side.coupling_attr("modified_on"), side.row_modified(row))
        setattr(coupling, side.coupling_attr("name"), side.row_name(row))

    def _error_row(self, plan: Plan, detail: str, now: datetime) -> SyncError:
        source_id = self.source.row_id(plan.source_row)
        target_id = getattr(plan.coupling, self.target.coupling_attr("id")) if plan.coupling else None
        diffs = "\n".join(f"{f}: {old!r} -> {new!r}" for f, old, new in plan_diffs(plan))
        if plan.action == Action.UPDATE and plan.conflicts:
            # Written fields, then each conflicting field (the target's value -> the source's, as a failed conflict
            # shows it), neither side of it written.
            diffs = "\n".join(
                [f"{line} (written)" for line in diffs.splitlines()]
                + [
                    f"{c.field}: {c.target_value!r} -> {c.source_value!r} (conflict, not written)"
                    for c in plan.conflicts
                ]
            )
        names = {
            self.source.coupling_attr("name"): self.source.row_name(plan.source_row),
            self.target.coupling_attr("name"): getattr(plan.coupling, self.target.coupling_attr("name"), "")
            if plan.coupling
            else "",
        }
        return SyncError(
            job=self.job,
            table_mapping=self.job.table_mapping,
            direction=self.direction,
            bc_id=target_id if self.source.is_dataverse else source_id,
            dataverse_id=source_id if self.source.is_dataverse else target_id,
            error_class=plan.error_class or ErrorClass.INTERNAL,
            message=plan.message,
            detail="\n".join(part for part in (detail, diffs) if part),
            **names,
        )


def record_failure(
    coupling: Coupling,
    job: SyncJob,
    error_class: str,
    message: str,
    *,
    now: datetime,
    outcome_unknown: bool = False,
    target_etag: str = "",
) -> str:
    """Record a failure of the record in the job's direction on its coupling (a write's, or a deletion carried over
    by jobs/engine/deletions.py), and skip the record per the mapping's skip policy for `error_class`: after that
    many identical failures in a row. Transient errors (and writes whose outcome is unknown) are never skipped: runs
    retry them after a back-off that grows with each failure in a row (jobs/engine/backoff.py). `target_etag`: the
    target record's version the failure saw, so that un-skipping notices when someone changes it (empty: not known).
    Returns a line for the error's log when the record is skipped."""
    direction = job.direction
    repeated = coupling.last_result(direction) == SyncResult.FAILURE and same_error(
        coupling.last_error(direction), message
    )
    count_field = Coupling.failures_field(direction)
    count = (getattr(coupling, count_field) + 1) if repeated else 1
    setattr(coupling, count_field, min(count, 32767))
    limit = 0 if retryable(error_class, outcome_unknown=outcome_unknown) else job.table_mapping.skip_after(error_class)
    note = ""
    if limit and count >= limit and settings.SYNC_SKIP_REPEATED_FAILURES:
        coupling.skip(error_class, now, target_etag)
        note = (
            f"{admin_time(now)}: skipped after {count} identical failure(s) in a row (the mapping "
            f"skips {error_class} errors after {limit}). It is un-skipped by itself when the cause is fixed, or by "
            f"a retry."
        )
    coupling.fail(direction, job.pk, message, may_have_landed=outcome_unknown)
    return note


def plan_diffs(plan: Plan) -> list[tuple[str, Any, Any]]:
    """The field changes a plan makes, for error details and previews: (field, old, new)."""
    if plan.diffs:
        return [(d.field, d.old, d.new) for d in plan.diffs]
    if plan.action == Action.INSERT:
        return [(k, None, v) for k, v in plan.values.items()]
    return []


def _detail(error: ConnectorError | None) -> str:
    return error.detail() if error is not None else ""


def error_class_of(error: ConnectorError | None) -> str:
    """The error class of a connector's failure (what the skip policy and the error list go by)."""
    if error is None:
        return str(ErrorClass.INTERNAL)
    return error.kind.value if error.kind.value in ErrorClass.values else str(ErrorClass.INTERNAL)
