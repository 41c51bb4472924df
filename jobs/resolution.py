"""Look at a coupled pair side by side, explain its error, and resolve an update conflict field by field.

Conflict resolution writes the chosen values straight to both systems, through the engine's own field rules (so
transformations, value maps and lookups apply as in a sync), each write with If-Match on the version just read.
Then the coupling stores both sides' new ETags and modified-on: the next run sees no change on either side and so
no conflict. This is simpler than teaching the engine per-field overrides, and as safe: a record changed again
between reading and writing is refused by its ETag and the page says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.db import transaction

from connectors.types import ConnectorError, RemoteClient, WriteOperation
from coupling.choices import SyncResult
from coupling.models import Coupling
from jobs.choices import ErrorClass, JobKind
from jobs.engine.sides import sides_for
from jobs.engine.values import LookupResolver, RecordFailure, compile_rules, current_value, desired_value, values_equal
from mappings.choices import Direction
from mappings.models import TableMapping

BC, DATAVERSE = "bc", "dataverse"

# What each class of error means, and what to do about it, in plain words.
EXPLANATIONS: dict[str, tuple[str, str]] = {
    ErrorClass.TRANSIENT: (
        "The other system did not answer in time or had a temporary fault.",
        "Nothing to fix: retry, or let the next scheduled run pick the record up again.",
    ),
    ErrorClass.THROTTLED: (
        "The other system asked us to slow down (too many requests) and kept refusing after our retries.",
        "Retry later, or spread the runs: lengthen the schedule interval or sync fewer mappings at once.",
    ),
    ErrorClass.AUTHENTICATION: (
        "The connection's credentials were refused.",
        "Open Connections, fix the client secret or certificate, use Test connection, then retry.",
    ),
    ErrorClass.PERMISSION: (
        "The integration user may not read or write this table.",
        "Give the application user the missing privilege (security role in Dataverse, permission set in Business "
        "Central), then retry.",
    ),
    ErrorClass.VALIDATION: (
        "The target system refused a value of this record (too long, not allowed, or required but empty).",
        "Correct the value in the source record, or adjust the field mapping (transformation, value map), then retry.",
    ),
    ErrorClass.NOT_FOUND: (
        "The record, or the company, no longer exists in the target system.",
        "If the partner was deleted: restore it or delete the surviving record from the coupled records list.",
    ),
    ErrorClass.CONFLICT: (
        "The record changed in both systems since the last synchronization, and the changed fields differ.",
        "Resolve the conflict: choose per field which system's value wins, and both records get that value.",
    ),
    ErrorClass.DELETION_CONFLICT: (
        "The record is coupled to a record that was deleted in the other system.",
        "Restore the deleted partner, delete the surviving record too, or uncouple them.",
    ),
    ErrorClass.MISSING_DEPENDENCY: (
        "The record refers to another record (a currency, a salesperson) that is not coupled yet.",
        "Couple or synchronize the referenced mapping first (run match-based coupling on it), then retry.",
    ),
    ErrorClass.AMBIGUOUS_MATCH: (
        "The record is not coupled, and its match fields do not single out one record in the other system: several "
        "records match it, or another uncoupled record matches the same one. Nothing was coupled and no new record "
        "was created, so no duplicate was made.",
        "Open the mapping's ambiguous matches and couple it with the right record by a click (or make the match "
        "fields more specific), then synchronize it again.",
    ),
    ErrorClass.INTERNAL: (
        "syncadmin stopped on an unexpected error while handling this record.",
        "Retry once; if it fails again, send the error's detail to your administrator.",
    ),
}


class ResolutionFailed(Exception):
    """The conflict could not be resolved; the message says why and what to do."""


@dataclass
class FieldPair:
    field_mapping_id: int
    bc_field: str
    dataverse_field: str
    bc_value: Any
    dataverse_value: Any
    differs: bool
    bidirectional: bool


@dataclass
class Comparison:
    mapping: TableMapping
    bc_row: dict | None = None
    dataverse_row: dict | None = None
    fields: list[FieldPair] = field(default_factory=list)

    @property
    def differing(self) -> list[FieldPair]:
        return [f for f in self.fields if f.differs]


def _rules_by_target(mapping: TableMapping, direction: str):
    source, target = sides_for(mapping, direction)
    return source, target, {rule.target_field: rule for rule in compile_rules(mapping, direction, source, target)}


def _pairs(mapping: TableMapping):
    return [
        fm
        for fm in mapping.field_mappings.filter(enabled=True).order_by("position", "id")
        if fm.bc_field and fm.dataverse_field
    ]


def records_compare(
    *, mapping: TableMapping, bc_id: UUID | None, dataverse_id: UUID | None, bc_client, dataverse_client
) -> Comparison:
    """Read both records (one request each) and compare every mapped field as the sync would."""
    comparison = Comparison(mapping)
    if bc_id:
        comparison.bc_row = bc_client.read_by_ids(mapping.bc_entity_set, [bc_id]).get(bc_id)
    if dataverse_id:
        comparison.dataverse_row = dataverse_client.read_by_ids(mapping.dataverse_entity_set, [dataverse_id]).get(
            dataverse_id
        )
    bc_side, dv_side, to_dv = _rules_by_target(mapping, Direction.TO_DATAVERSE)
    _, _, from_dv = _rules_by_target(mapping, Direction.FROM_DATAVERSE)
    bc_row, dv_row = comparison.bc_row or {}, comparison.dataverse_row or {}
    lookups_to = LookupResolver(list(to_dv.values()), bc_side, bc_client, dataverse_client)
    lookups_from = LookupResolver(list(from_dv.values()), dv_side, bc_client, dataverse_client)
    if bc_row:
        lookups_to.prepare([bc_row])
    if dv_row:
        lookups_from.prepare([dv_row])
    for fm in _pairs(mapping):
        is_lookup = fm.lookup_mapping_id is not None
        bc_value = bc_row.get(bc_side.read_field_name(fm.bc_field, is_lookup=is_lookup))
        dv_value = dv_row.get(dv_side.read_field_name(fm.dataverse_field, is_lookup=is_lookup))
        differs = False
        if bc_row and dv_row:
            rule, lookups, source_row, target_row, target = (
                to_dv.get(fm.dataverse_field),
                lookups_to,
                bc_row,
                dv_row,
                dv_side,
            )
            if rule is None:
                rule, lookups, source_row, target_row, target = (
                    from_dv.get(fm.bc_field),
                    lookups_from,
                    dv_row,
                    bc_row,
                    bc_side,
                )
            if rule is not None:
                try:
                    write, desired = desired_value(rule, source_row, lookups, target)
                    differs = write and not values_equal(
                        desired, current_value(rule, target_row, target), target=target
                    )
                except RecordFailure:
                    differs = True
        comparison.fields.append(
            FieldPair(
                fm.pk,
                fm.bc_field,
                fm.dataverse_field,
                bc_value,
                dv_value,
                differs,
                fm.direction == Direction.BIDIRECTIONAL,
            )
        )
    return comparison


def conflict_resolve(
    *, coupling: Coupling, winners: dict[int, str], bc_client: RemoteClient, dataverse_client: RemoteClient
) -> dict[str, int]:
    """Give both records the winning value of each field (`winners`: field mapping id -> "bc" | "dataverse").

    Returns how many fields were written to each system. Raises ResolutionFailed (nothing stored) when a record is
    missing or changed again since it was read.
    """
    mapping = coupling.table_mapping
    bc_side, dv_side, to_dv = _rules_by_target(mapping, Direction.TO_DATAVERSE)
    _, _, from_dv = _rules_by_target(mapping, Direction.FROM_DATAVERSE)
    bc_row = bc_client.read_by_ids(mapping.bc_entity_set, [coupling.bc_id]).get(coupling.bc_id)
    dv_row = dataverse_client.read_by_ids(mapping.dataverse_entity_set, [coupling.dataverse_id]).get(
        coupling.dataverse_id
    )
    if bc_row is None or dv_row is None:
        raise ResolutionFailed("One of the two records no longer exists: this is a deletion, not an update conflict.")
    to_dv_values, to_bc_values = {}, {}
    lookups_to = LookupResolver(list(to_dv.values()), bc_side, bc_client, dataverse_client)
    lookups_from = LookupResolver(list(from_dv.values()), dv_side, bc_client, dataverse_client)
    lookups_to.prepare([bc_row])
    lookups_from.prepare([dv_row])
    for fm in _pairs(mapping):
        winner = winners.get(fm.pk)
        try:
            if winner == BC and fm.dataverse_field in to_dv:
                rule = to_dv[fm.dataverse_field]
                write, value = desired_value(rule, bc_row, lookups_to, dv_side)
                if write and not values_equal(value, current_value(rule, dv_row, dv_side), target=dv_side):
                    to_dv_values[rule.write_key(dv_side)] = value
            elif winner == DATAVERSE and fm.bc_field in from_dv:
                rule = from_dv[fm.bc_field]
                write, value = desired_value(rule, dv_row, lookups_from, bc_side)
                if write and not values_equal(value, current_value(rule, bc_row, bc_side), target=bc_side):
                    to_bc_values[rule.write_key(bc_side)] = value
        except RecordFailure as failure:
            raise ResolutionFailed(failure.message) from None
    written = {BC: 0, DATAVERSE: 0}
    stored = {
        "bc": (bc_side.row_etag(bc_row), bc_side.row_modified(bc_row)),
        "dataverse": (dv_side.row_etag(dv_row), dv_side.row_modified(dv_row)),
    }
    # Dataverse first, then Business Central; if the second write fails, the first is still remembered below.
    failure = None
    for system, client, side, row, values, record_id in (
        (DATAVERSE, dataverse_client, dv_side, dv_row, to_dv_values, coupling.dataverse_id),
        (BC, bc_client, bc_side, bc_row, to_bc_values, coupling.bc_id),
    ):
        if not values or failure:
            continue
        (result,) = client.write_many(
            [
                WriteOperation(
                    kind="update",
                    entity_set=side.entity_set,
                    ref=system,
                    values=values,
                    record_id=record_id,
                    etag=side.row_etag(row) or None,
                )
            ]
        )
        if not result.ok:
            failure = result.error or ConnectorError("internal", "unknown error")
            continue
        after = result.row or {}
        stored[system] = (result.etag or side.row_etag(after), result.modified_on or side.row_modified(after))
        written[system] = len(values)
    with transaction.atomic():
        # On success both sides now hold the chosen values: remember both versions. On failure, only the side
        # actually written, so the unresolved difference is still seen as a conflict next time.
        if failure is None or written[BC]:
            coupling.bc_etag, coupling.bc_modified_on = stored["bc"][0] or "", stored["bc"][1]
        if failure is None or written[DATAVERSE]:
            coupling.dataverse_etag = stored["dataverse"][0] or ""
            coupling.dataverse_modified_on = stored["dataverse"][1]
        if failure is None:
            coupling.last_result_to_dataverse = SyncResult.SUCCESS if mapping.syncs_to_dataverse else ""
            coupling.last_result_from_dataverse = SyncResult.SUCCESS if mapping.syncs_from_dataverse else ""
            coupling.skipped = False
            coupling.last_error_to_dataverse = coupling.last_error_from_dataverse = ""
        coupling.save()
    if failure is not None:
        raise ResolutionFailed(
            f"Writing the chosen values failed: {failure.message} If a record changed again meanwhile, reload the "
            "page and choose again."
        )
    return written


def sync_errors_retry(*, errors, user=None) -> list:
    """Synchronize the records of these errors again, now: one records job per mapping and direction.

    Their couplings are un-skipped first. Errors that name no source record (a run that stopped) are left out.
    """
    from jobs.services import SyncNotStarted, sync_enqueue  # jobs.services is heavier; only retries need it

    groups: dict[tuple[int, str], set] = defaultdict(set)
    for mapping_id, direction, bc_id, dataverse_id in errors.values_list(
        "table_mapping_id", "direction", "bc_id", "dataverse_id"
    ).order_by():
        source_id = bc_id if direction == Direction.TO_DATAVERSE else dataverse_id
        if source_id and direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE):
            groups[(mapping_id, direction)].add(source_id)
    jobs = []
    mappings = TableMapping.objects.in_bulk({mapping_id for mapping_id, _ in groups})
    for (mapping_id, direction), ids in sorted(groups.items()):
        source_attr = "bc_id" if direction == Direction.TO_DATAVERSE else "dataverse_id"
        Coupling.objects.filter(table_mapping_id=mapping_id, **{f"{source_attr}__in": ids}).unskip(direction)
        try:
            jobs += sync_enqueue(
                mapping=mappings[mapping_id],
                kind=JobKind.RECORDS,
                direction=direction,
                record_ids=sorted(ids),
                user=user,
            )
        except SyncNotStarted:
            continue
    return jobs
