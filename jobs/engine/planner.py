"""Plan one record: a pure function of the source row, its coupling, the counterpart row and the rules.

A preview (dry run) is the plan without the write. Nothing here reads or writes the database or the network.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coupling.models import Coupling
from jobs.choices import ErrorClass
from jobs.engine.sides import Row, Side
from jobs.engine.values import (
    FieldRule,
    LookupResolver,
    RecordFailure,
    current_value,
    desired_value,
    is_blank,
    values_equal,
)
from mappings.choices import DeletionConflictResolution, Direction, UpdateConflictResolution


class Action(enum.StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"  # the coupling is flagged skipped, or the losing side of a resolved conflict
    IGNORE = "ignore"  # uncoupled while the mapping syncs only coupled records: not counted (as BC)
    UNCOUPLE = "uncouple"  # deletion conflict resolved by removing the coupling
    FAIL = "fail"


@dataclass
class FieldDiff:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Plan:
    """What to do with one source record; fixed once planned (the writer and saver derive new ones)."""

    action: Action
    source_row: Row
    coupling: Coupling | None = None
    target_row: Row | None = None
    values: dict[str, Any] = field(default_factory=dict)
    diffs: list[FieldDiff] = field(default_factory=list)
    error_class: str = ""
    message: str = ""
    restore: bool = False  # an INSERT that replaces a deleted counterpart (deletion conflict, restore policy)
    # The target had changes of its own since the last sync: after our write, the reverse pass must still read it,
    # so the coupling keeps the target's earlier version instead of the one our write produced.
    target_had_changes: bool = False
    outcome_unknown: bool = False  # the write failed in a way that may have landed (dropped connection)


@dataclass(frozen=True)
class PlanContext:
    direction: str
    source: Side
    target: Side
    rules: list[FieldRule]
    bidirectional_mapping: bool
    only_coupled: bool
    force: bool  # selected records and full sync overwrite without change or conflict checks (BC's ForceModify)
    update_policy: str
    deletion_policy: str
    new_record_values: dict[str, Any]
    # One-way fields of the other direction, read backwards: values a record this run creates starts with.
    initial_rules: list[FieldRule] = field(default_factory=list)


def source_changed(ctx: PlanContext, row: Row, coupling: Coupling) -> bool:
    if coupling.last_result(ctx.direction) == "failure":
        return True
    stored_etag: str = getattr(coupling, ctx.source.coupling_attr("etag"))
    if stored_etag:
        return stored_etag != ctx.source.row_etag(row)
    stored_modified: datetime | None = getattr(coupling, ctx.source.coupling_attr("modified_on"))
    modified = ctx.source.row_modified(row)
    return stored_modified is None or modified is None or modified > stored_modified


def target_changed(ctx: PlanContext, target_row: Row, coupling: Coupling) -> bool:
    stored_etag: str = getattr(coupling, ctx.target.coupling_attr("etag"))
    if stored_etag:
        return stored_etag != ctx.target.row_etag(target_row)
    stored_modified: datetime | None = getattr(coupling, ctx.target.coupling_attr("modified_on"))
    modified = ctx.target.row_modified(target_row)
    # Never synchronized since coupling: its values are its own, so they count as changed (as BC's zero timestamp).
    return stored_modified is None or modified is None or modified > stored_modified


def _all_values(ctx: PlanContext, row: Row, lookups: LookupResolver) -> dict[str, Any]:
    values = {}
    for rule in ctx.rules:
        write, value = desired_value(rule, row, lookups, ctx.target)
        if write:
            values[rule.write_key(ctx.target)] = value
    return values


def _insert(
    ctx: PlanContext, row: Row, coupling: Coupling | None, lookups: LookupResolver, *, restore: bool = False
) -> Plan:
    values = _all_values(ctx, row, lookups)
    for rule in ctx.initial_rules:
        try:
            write, value = desired_value(rule, row, lookups, ctx.target)
        except RecordFailure:
            continue  # a starting value that cannot be read backwards is left to the target, not a failure
        if write and not is_blank(value):
            values.setdefault(rule.write_key(ctx.target), value)
    # Values for new records (BC's config templates) apply on top, as BC applies its template after the transfer.
    values.update(ctx.new_record_values)
    return Plan(Action.INSERT, row, coupling, values=values, restore=restore)


def plan_record(
    ctx: PlanContext, row: Row, coupling: Coupling | None, target_row: Row | None, lookups: LookupResolver
) -> Plan:
    try:
        return _plan(ctx, row, coupling, target_row, lookups)
    except RecordFailure as failure:
        return Plan(Action.FAIL, row, coupling, target_row, error_class=failure.error_class, message=failure.message)


def _plan(
    ctx: PlanContext, row: Row, coupling: Coupling | None, target_row: Row | None, lookups: LookupResolver
) -> Plan:
    if coupling is not None and coupling.skipped:
        return Plan(Action.SKIP, row, coupling, target_row, message="The coupling is marked skipped.")

    if coupling is None:
        if ctx.only_coupled:
            return Plan(Action.IGNORE, row)
        return _insert(ctx, row, None, lookups)

    if target_row is None:
        if coupling.pending:
            # Our earlier insert never happened (or failed): insert again under the same coupling.
            return _insert(ctx, row, coupling, lookups)
        return _deletion_conflict(ctx, row, coupling, lookups)

    chosen = coupling.first_sync_direction
    if chosen and chosen != ctx.direction and not coupling.pending:
        # A person chose the other direction for this pair's first synchronization: that one goes first, or the
        # values they chose to keep would be overwritten (or reported as a conflict) from this side.
        return Plan(
            Action.SKIP,
            row,
            coupling,
            target_row,
            message="Waits for its first synchronization in the direction chosen when it was coupled.",
        )

    if not ctx.force and not coupling.pending and not source_changed(ctx, row, coupling):
        return Plan(Action.UNCHANGED, row, coupling, target_row)

    diffs, values = [], {}
    conflicting = []
    # In the chosen first direction the target's values are not changes of its own: this side wins, as chosen.
    target_had_changes = not coupling.pending and chosen != ctx.direction and target_changed(ctx, target_row, coupling)
    check_conflicts = not ctx.force and ctx.bidirectional_mapping and target_had_changes
    for rule in ctx.rules:
        write, desired = desired_value(rule, row, lookups, ctx.target)
        if not write:
            continue
        current = current_value(rule, target_row, ctx.target)
        if values_equal(desired, current, target=ctx.target):
            continue
        if check_conflicts and rule.bidirectional:
            conflicting.append((rule, current, desired))
            continue
        diffs.append(FieldDiff(rule.target_field, current, desired))
        values[rule.write_key(ctx.target)] = desired

    if conflicting:
        plan = _resolve_conflict(ctx, row, coupling, target_row, conflicting, diffs, values)
        if plan is not None:
            return plan

    if not values:
        return Plan(Action.UNCHANGED, row, coupling, target_row)
    return Plan(
        Action.UPDATE,
        row,
        coupling,
        target_row,
        values=values,
        diffs=diffs,
        target_had_changes=target_had_changes and ctx.bidirectional_mapping,
    )


def _source_wins(ctx: PlanContext, policy: str) -> bool | None:
    """True if the run's source side wins under `policy`, False if the target wins, None if nobody may."""
    if policy == UpdateConflictResolution.SEND_TO_DATAVERSE:
        return ctx.direction == Direction.TO_DATAVERSE
    if policy == UpdateConflictResolution.GET_FROM_DATAVERSE:
        return ctx.direction == Direction.FROM_DATAVERSE
    return None


def _resolve_conflict(
    ctx: PlanContext,
    row: Row,
    coupling: Coupling,
    target_row: Row,
    conflicting: list[tuple[FieldRule, Any, Any]],
    diffs: list[FieldDiff],
    values: dict[str, Any],
) -> Plan | None:
    """Apply the field's (or else the mapping's) update-conflict policy; report the conflict when there is none."""
    unresolved = []
    for rule, current, desired in conflicting:
        wins = _source_wins(ctx, rule.conflict_policy or ctx.update_policy)
        if wins is None:
            unresolved.append(rule.target_field)
        elif wins:
            diffs.append(FieldDiff(rule.target_field, current, desired))
            values[rule.write_key(ctx.target)] = desired
    if unresolved:
        fields = ", ".join(unresolved)
        return Plan(
            Action.FAIL,
            row,
            coupling,
            target_row,
            diffs=[FieldDiff(r.target_field, c, d) for r, c, d in conflicting],
            error_class=ErrorClass.CONFLICT,
            message=(
                f"Update conflict: the record changed in both systems since the last synchronization, and the "
                f"bidirectional field(s) {fields} differ. Nothing was overwritten. Choose the winning side per field "
                f"(or set an update-conflict policy on the mapping), then retry."
            ),
        )
    if not values:
        return Plan(
            Action.SKIP, row, coupling, target_row, message="Update conflict resolved in favour of the other side."
        )
    return None


def _deletion_conflict(ctx: PlanContext, row: Row, coupling: Coupling, lookups: LookupResolver) -> Plan:
    if ctx.deletion_policy == DeletionConflictResolution.RESTORE_RECORDS:
        return _insert(ctx, row, coupling, lookups, restore=True)
    if ctx.deletion_policy == DeletionConflictResolution.REMOVE_COUPLING:
        return Plan(Action.UNCOUPLE, row, coupling, message="The coupled record was deleted; coupling removed.")
    return Plan(
        Action.FAIL,
        row,
        coupling,
        error_class=ErrorClass.DELETION_CONFLICT,
        message=(
            f"The {ctx.source.label} record cannot be updated because it is coupled to a deleted {ctx.target.label} "
            f"record. Restore the deleted record, delete this one too, or remove the coupling."
        ),
    )
