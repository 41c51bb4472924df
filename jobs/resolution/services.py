"""Writing what the error pages decide: resolve an update conflict field by field, retry the records of errors.

Conflict resolution writes the chosen values straight to both systems, through the engine's own field rules (so
transformations, value maps and lookups apply as in a sync), each write with If-Match on the version just read.
Then the coupling stores both sides' new ETags and modified-on: the next run sees no change on either side and so
no conflict. This is simpler than teaching the engine per-field overrides, and as safe: a record changed again
between reading and writing is refused by its ETag and the page says so.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import transaction
from django.db.models import Q

from connectors.types import ConnectorError, ErrorKind, RemoteClient, WriteOperation
from coupling.models import Coupling
from jobs.choices import ErrorClass, ErrorState, JobKind
from jobs.engine.sides import run_directions
from jobs.engine.values import LookupResolver, RecordFailure, current_value, desired_value, values_equal
from jobs.models import SyncError
from jobs.resolution.comparison import compared_field_mappings, rules_by_target
from jobs.services import SyncNotStarted, sync_enqueue
from mappings.choices import BC, DATAVERSE, Direction
from mappings.models import TableMapping


class ResolutionFailed(Exception):
    """The conflict could not be resolved; the message says why and what to do."""


def conflict_resolve(
    *,
    coupling: Coupling,
    winners: dict[int, str],
    bc_client: RemoteClient,
    dataverse_client: RemoteClient,
    user=None,
) -> dict[str, int]:
    """Give both records the winning value of each field (`winners`: field mapping id -> "bc" | "dataverse").

    Returns how many fields were written to each system. Raises ResolutionFailed (nothing stored) when a record is
    missing or changed again since it was read.
    """
    mapping = coupling.table_mapping
    bc_side, dv_side, to_dv = rules_by_target(mapping, Direction.TO_DATAVERSE)
    _, _, from_dv = rules_by_target(mapping, Direction.FROM_DATAVERSE)
    bc_id, dv_id = coupling.bc_id, coupling.dataverse_id
    bc_row = bc_client.read_by_ids(mapping.bc_entity_set, [bc_id]).get(bc_id) if bc_id else None
    dv_row = dataverse_client.read_by_ids(mapping.dataverse_entity_set, [dv_id]).get(dv_id) if dv_id else None
    if bc_row is None or dv_row is None:
        raise ResolutionFailed("One of the two records no longer exists: this is a deletion, not an update conflict.")
    to_dv_values, to_bc_values = {}, {}
    lookups_to = LookupResolver(list(to_dv.values()), bc_side, bc_client, dataverse_client)
    lookups_from = LookupResolver(list(from_dv.values()), dv_side, bc_client, dataverse_client)
    lookups_to.prepare([bc_row])
    lookups_from.prepare([dv_row])
    for fm in compared_field_mappings(mapping):
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
        except RecordFailure as refused:
            raise ResolutionFailed(refused.message) from None
    written: dict[str, int] = {BC: 0, DATAVERSE: 0}
    stored = {
        BC: (bc_side.row_etag(bc_row), bc_side.row_modified(bc_row)),
        DATAVERSE: (dv_side.row_etag(dv_row), dv_side.row_modified(dv_row)),
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
            failure = result.error or ConnectorError(ErrorKind.TRANSIENT, "unknown error")
            continue
        after = result.row or {}
        stored[system] = (result.etag or side.row_etag(after), result.modified_on or side.row_modified(after))
        written[system] = len(values)
    with transaction.atomic():
        # On success both sides now hold the chosen values: remember both versions. On failure, only the side
        # actually written, so the unresolved difference is still seen as a conflict next time.
        if failure is None or written[BC]:
            coupling.bc_etag, coupling.bc_modified_on = stored[BC][0] or "", stored[BC][1]
        if failure is None or written[DATAVERSE]:
            coupling.dataverse_etag = stored[DATAVERSE][0] or ""
            coupling.dataverse_modified_on = stored[DATAVERSE][1]
        if failure is None:
            coupling.resolved_by_hand(run_directions(mapping))
            coupling_errors(coupling).close(ErrorState.RESOLVED_BY_HAND, user=user)
        coupling.save()
    if failure is not None:
        raise ResolutionFailed(
            f"Writing the chosen values failed: {failure.message} If a record changed again meanwhile, reload the "
            "page and choose again."
        )
    return written


def coupling_errors(coupling: Coupling):
    """The errors of a coupling's records, in both directions."""
    by_record = Q(bc_id=coupling.bc_id) if coupling.bc_id else Q(pk__in=[])
    if coupling.dataverse_id:
        by_record |= Q(dataverse_id=coupling.dataverse_id)
    return SyncError.objects.filter(by_record, table_mapping_id=coupling.table_mapping_id)


def sync_errors_resolve(*, errors, user) -> int:
    """A person says these errors are no longer wrong (fixed outside, or not worth fixing): resolved by hand.
    Returns how many were open."""
    return errors.close(ErrorState.RESOLVED_BY_HAND, user=user)


def sync_errors_retry(*, errors, user=None) -> list:
    """Synchronize the records of these errors again, now: one records job per mapping and direction.

    Their couplings are un-skipped first. Errors that name no source record (a run that stopped) are left out. Where
    a record failed on a missing dependency (a lookup not coupled yet), the mappings it depends on synchronize their
    modified records first, in the same job, as "synchronize modified records" does: retrying it alone would fail
    the same way.
    """
    groups: dict[tuple[int, str], set] = defaultdict(set)
    need_dependencies: set[tuple[int, str]] = set()
    for mapping_id, direction, bc_id, dataverse_id, error_class in errors.values_list(
        "table_mapping_id", "direction", "bc_id", "dataverse_id", "error_class"
    ).order_by():
        source_id = bc_id if direction == Direction.TO_DATAVERSE else dataverse_id
        if source_id and direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE):
            groups[(mapping_id, direction)].add(source_id)
            if error_class == ErrorClass.MISSING_DEPENDENCY:
                need_dependencies.add((mapping_id, direction))
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
                with_dependencies=(mapping_id, direction) in need_dependencies,
            )
        except SyncNotStarted:
            continue
    return jobs
