"""Plan one record: a pure function of the source row, its coupling, the counterpart row and the rules.

A preview (dry run) is the plan without the write. Nothing here reads or writes the database or the network.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adminkit.times import admin_time
from coupling.models import Coupling
from jobs.choices import ErrorClass
from jobs.engine.sides import Row, Side
from jobs.engine.values import (
    FieldRule,
    LookupResolver,
    RecordFailure,
    current_value,
    desired_value,
    fingerprint,
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
class FieldConflict:
    """A field both sides changed since the last synchronization, to different values."""

    field: str  # the target's field
    source_value: Any
    target_value: Any


Fingerprints = dict[str, dict[str, str]]  # system -> {field as read on that system: fingerprint}
Settled = dict[str, dict[str, Any]]  # system -> {field as read on that system: its value once the plan is written}


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
    # Field-level merge: the fields this plan settles (both sides agree once it is written), with each side's value,
    # which the saver fingerprints on the coupling; the target fields left to the reverse pass (changed on the
    # target side only); and the fields changed on both sides to different values.
    synced: Settled = field(default_factory=dict)
    merged: list[str] = field(default_factory=list)
    conflicts: list[FieldConflict] = field(default_factory=list)


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


def _all_values(ctx: PlanContext, row: Row, lookups: LookupResolver) -> tuple[dict[str, Any], Settled]:
    values: dict[str, Any] = {}
    synced: Settled = {ctx.source.system: {}, ctx.target.system: {}}
    for rule in ctx.rules:
        write, value = desired_value(rule, row, lookups, ctx.target)
        if write:
            values[rule.write_key(ctx.target)] = value
            _settle(ctx, synced, rule, row, value)
    return values, synced


def _settle(ctx: PlanContext, synced: Settled, rule: FieldRule, row: Row, target_value: Any) -> None:
    """Both sides hold this field's value once the plan is written: note each side's value of it.

    Only bidirectional fields of a bidirectional mapping are merged field by field, so only they are noted."""
    if rule.source_field and rule.bidirectional and ctx.bidirectional_mapping:
        synced[ctx.source.system][rule.source_field] = row.get(rule.source_field)
        synced[ctx.target.system][rule.current_key(ctx.target)] = target_value


def _changes_known(ctx: PlanContext, coupling: Coupling, rule: FieldRule) -> tuple[str, str] | None:
    """The fingerprints this field had on (source, target) at the last synchronization, if it was recorded."""
    stored = coupling.synced_fields or {}
    source_print = stored.get(ctx.source.system, {}).get(rule.source_field or "")
    target_print = stored.get(ctx.target.system, {}).get(rule.current_key(ctx.target))
    if source_print is None or target_print is None:
        return None
    return source_print, target_print


def _insert(
    ctx: PlanContext, row: Row, coupling: Coupling | None, lookups: LookupResolver, *, restore: bool = False
) -> Plan:
    values, synced = _all_values(ctx, row, lookups)
    for rule in ctx.initial_rules:
        try:
            write, value = desired_value(rule, row, lookups, ctx.target)
        except RecordFailure:
            continue  # a starting value that cannot be read backwards is left to the target, not a failure
        if write and not is_blank(value):
            values.setdefault(rule.write_key(ctx.target), value)
    # Values for new records (BC's config templates) apply on top, as BC applies its template after the transfer.
    values.update(ctx.new_record_values)
    return Plan(Action.INSERT, row, coupling, values=values, restore=restore, synced=synced)


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
    merged: list[str] = []
    synced: Settled = {ctx.source.system: {}, ctx.target.system: {}}
    # In the chosen first direction the target's values are not changes of its own: this side wins, as chosen.
    target_had_changes = not coupling.pending and chosen != ctx.direction and target_changed(ctx, target_row, coupling)
    check_conflicts = not ctx.force and ctx.bidirectional_mapping and target_had_changes
    # Field by field where the coupling recorded what was last synchronized (not for a forced run, which overwrites,
    # nor for a pending coupling, whose partner is new, nor in a pair's chosen first direction, where this side wins):
    # a field changed on the target side only is left for the reverse pass, and only a field changed on both sides
    # is a conflict. Otherwise record by record, as BC.
    by_field = (
        not ctx.force
        and not coupling.pending
        and chosen != ctx.direction
        and ctx.bidirectional_mapping
        and bool(coupling.synced_fields)
    )
    for rule in ctx.rules:
        write, desired = desired_value(rule, row, lookups, ctx.target)
        if not write:
            continue
        current = current_value(rule, target_row, ctx.target)
        if values_equal(desired, current, target=ctx.target):
            _settle(ctx, synced, rule, row, target_row.get(rule.current_key(ctx.target)))
            continue
        known = _changes_known(ctx, coupling, rule) if by_field and rule.bidirectional else None
        if known is not None:
            source_print, target_print = known
            source_moved = fingerprint(row.get(rule.source_field or "")) != source_print
            target_moved = fingerprint(target_row.get(rule.current_key(ctx.target))) != target_print
            if target_moved and not source_moved:
                merged.append(rule.target_field)  # the target's own change: it flows back in the reverse pass
                continue
            if target_moved and source_moved:
                conflicting.append((rule, current, desired))
                continue
        elif check_conflicts and rule.bidirectional:
            conflicting.append((rule, current, desired))
            continue
        diffs.append(FieldDiff(rule.target_field, current, desired))
        values[rule.write_key(ctx.target)] = desired
        _settle(ctx, synced, rule, row, desired)

    if conflicting:
        plan = _resolve_conflict(
            ctx, row, coupling, target_row, conflicting, diffs, values, synced, partial=by_field, merged=merged
        )
        if plan is not None:
            return dataclasses.replace(plan, merged=merged)

    if not values:
        return Plan(Action.UNCHANGED, row, coupling, target_row, synced=synced, merged=merged)
    return Plan(
        Action.UPDATE,
        row,
        coupling,
        target_row,
        values=values,
        diffs=diffs,
        target_had_changes=target_had_changes and ctx.bidirectional_mapping,
        synced=synced,
        merged=merged,
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
    synced: Settled,
    *,
    partial: bool,
    merged: list[str],
) -> Plan | None:
    """Apply the field's (or else the mapping's) update-conflict policy; report the conflict when there is none.

    Merging field by field (`partial`), an unresolved conflict holds back its own fields only: the fields changed on
    the source side only are still written (an UPDATE that carries the conflict, counted and reported as a failure
    by the saver), and only the written fields are noted as synchronized, so the conflicting ones are still seen as
    changed on both sides next time. Record by record (a coupling from before the merge), nothing is written."""
    unresolved = []
    for rule, current, desired in conflicting:
        wins = _source_wins(ctx, rule.conflict_policy or ctx.update_policy)
        if wins is None:
            unresolved.append(FieldConflict(rule.target_field, desired, current))
        elif wins:
            diffs.append(FieldDiff(rule.target_field, current, desired))
            values[rule.write_key(ctx.target)] = desired
            _settle(ctx, synced, rule, row, desired)
    if unresolved and partial and values:
        return Plan(
            Action.UPDATE,
            row,
            coupling,
            target_row,
            values=values,
            diffs=diffs,
            error_class=ErrorClass.CONFLICT,
            message=_conflict_message(ctx, row, target_row, unresolved, written=[d.field for d in diffs]),
            target_had_changes=True,  # the target changed the conflicting fields: the reverse pass must still read it
            synced=synced,
            merged=merged,
            conflicts=unresolved,
        )
    if unresolved:
        return Plan(
            Action.FAIL,
            row,
            coupling,
            target_row,
            diffs=[FieldDiff(c.field, c.target_value, c.source_value) for c in unresolved],
            error_class=ErrorClass.CONFLICT,
            message=_conflict_message(ctx, row, target_row, unresolved),
            conflicts=unresolved,
        )
    if not values:
        return Plan(
            Action.SKIP,
            row,
            coupling,
            target_row,
            message="Update conflict resolved in favour of the other side.",
            synced=synced,
        )
    return None


def _conflict_message(
    ctx: PlanContext, row: Row, target_row: Row, conflicts: list[FieldConflict], *, written: list[str] | None = None
) -> str:
    """Both values of each conflicting field, and when each side last changed the record (neither API says who);
    `written`: the other fields the same run wrote all the same (changed on the source side only)."""
    source_when, target_when = ctx.source.row_modified(row), ctx.target.row_modified(target_row)
    fields = "; ".join(
        f"{c.field}: {ctx.source.label} has {c.source_value!r}, {ctx.target.label} has {c.target_value!r}"
        for c in conflicts
    )
    when = (
        f" ({ctx.source.label} record last changed {admin_time(source_when)}, "
        f"{ctx.target.label} record {admin_time(target_when)})"
        if source_when and target_when
        else ""
    )
    overwritten = (
        f"Neither value was overwritten; the fields changed on {ctx.source.label}'s side only were written to "
        f"{ctx.target.label}: {', '.join(written)}."
        if written
        else "Nothing was overwritten."
    )
    return (
        f"Update conflict: both systems changed the same field(s) since the last synchronization, to different "
        f"values{when}. {fields}. {overwritten} Choose the winning side per field (or set an "
        f"update-conflict policy on the field or the mapping), then retry."
    )


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
