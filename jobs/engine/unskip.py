"""Un-skipping records whose cause was fixed, at the start of a run (before its failed records are retried).

A record is skipped after identical failures (the mapping's skip policy). Business Central keeps it skipped until
someone retries it; here a run un-skips it by itself when what made it fail has changed since it was skipped:
- the mapping, or one of its field mappings, was changed (TableMapping.updated_at moves with both);
- for a missing dependency: a record of a mapping it looks up through was coupled since;
- the target record (the side the failing write went to) was changed since, by someone else.
The un-skipped records are then retried as failed records are; the un-skip is logged on each one's last error.
Costs: a query when nothing is skipped; otherwise a query per cause, and the target ids read a page at a time.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db.models import F, Max, Value
from django.db.models.functions import Concat
from django.utils import timezone

from adminkit.times import admin_time
from connectors.odata import chunked
from connectors.types import ConnectorError, RemoteClient
from coupling.choices import SyncResult
from coupling.models import Coupling
from jobs.choices import ErrorClass
from jobs.engine.sides import Side
from jobs.models import SyncError
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

ID_PAGE = 500


def unskip_fixed(mapping: TableMapping, direction: str, target: Side, target_client: RemoteClient) -> int:
    """Un-skip the records of `mapping` skipped in `direction` whose cause was fixed; return how many."""
    skipped = list(
        Coupling.objects.filter(
            table_mapping=mapping, skipped=True, **{Coupling.result_field(direction): SyncResult.FAILURE}
        ).only("pk", "bc_id", "dataverse_id", "skipped_at", "skipped_error_class", "skipped_target_etag")
    )
    if not skipped:
        return 0
    mapping.refresh_from_db(fields=["updated_at"])
    causes: dict[int, str] = {}
    for coupling in skipped:
        if coupling.skipped_at is None or mapping.updated_at > coupling.skipped_at:
            causes[coupling.pk] = "the mapping or one of its field mappings was changed"
    latest_dependency = _latest_dependency_coupled(mapping)
    for coupling in skipped:
        if (
            coupling.pk not in causes
            and coupling.skipped_error_class == ErrorClass.MISSING_DEPENDENCY
            and latest_dependency is not None
            and coupling.skipped_at is not None
            and latest_dependency > coupling.skipped_at
        ):
            causes[coupling.pk] = "a record of a mapping it depends on was coupled"
    for pk in _target_changed(target, target_client, [c for c in skipped if c.pk not in causes]):
        causes[pk] = f"its {target.label} record was changed"
    if causes:
        _log_and_unskip(mapping, direction, [c for c in skipped if c.pk in causes], causes)
    return len(causes)


def _latest_dependency_coupled(mapping: TableMapping) -> datetime | None:
    """When a record of a mapping this one looks up through was last coupled."""
    lookup_ids = set(
        mapping.field_mappings.filter(enabled=True, lookup_mapping__isnull=False).values_list(
            "lookup_mapping_id", flat=True
        )
    )
    if not lookup_ids:
        return None
    latest: datetime | None = Coupling.objects.filter(table_mapping_id__in=lookup_ids, pending=False).aggregate(
        latest=Max("created_at")
    )["latest"]
    return latest


def _target_changed(target: Side, client: RemoteClient, couplings: list[Coupling]) -> list[int]:
    """The couplings whose target record's version differs from the one the failure saw (a page of ids a request)."""
    id_attr = target.coupling_attr("id")
    by_id = {getattr(c, id_attr): c for c in couplings if getattr(c, id_attr) and c.skipped_target_etag}
    changed: list[int] = []
    for ids in chunked(list(by_id), ID_PAGE):
        try:
            rows = client.read_by_ids(target.entity_set, ids, select=[target.id_field, target.modified_field])
        except ConnectorError as exc:
            logger.warning("Could not check skipped records' %s versions: %s", target.label, exc)
            return changed
        for record_id, row in rows.items():
            coupling = by_id.get(record_id)
            if coupling is not None and target.row_etag(row) and target.row_etag(row) != coupling.skipped_target_etag:
                changed.append(coupling.pk)
    return changed


def _log_and_unskip(mapping: TableMapping, direction: str, couplings: list[Coupling], causes: dict[int, str]) -> None:
    now = timezone.now()
    by_cause: dict[str, list[int]] = {}
    for coupling in couplings:
        by_cause.setdefault(causes[coupling.pk], []).append(coupling.pk)
    for cause, pks in by_cause.items():
        errors = _last_errors(mapping, direction, [c for c in couplings if c.pk in set(pks)])
        line = f"\n{admin_time(now)}: un-skipped automatically: {cause}."
        SyncError.objects.filter(pk__in=errors).update(detail=Concat(F("detail"), Value(line)))
    Coupling.objects.filter(pk__in=list(causes)).unskip(direction)
    logger.info("%s: %d skipped record(s) un-skipped, their cause fixed", mapping.name, len(causes))


def _last_errors(mapping: TableMapping, direction: str, couplings: list[Coupling]) -> list[int]:
    """The latest error of each of these records in `direction` (one query for them all)."""
    bc_ids = {c.bc_id for c in couplings if c.bc_id}
    found: dict[object, int] = {}
    rows = (
        SyncError.objects.filter(table_mapping=mapping, direction=direction, bc_id__in=bc_ids)
        .order_by("-created_at", "-id")
        .values_list("bc_id", "pk")
    )
    for bc_id, pk in rows:
        found.setdefault(bc_id, pk)
    dataverse_only = {c.dataverse_id for c in couplings if not c.bc_id and c.dataverse_id}
    if dataverse_only:
        rows = (
            SyncError.objects.filter(table_mapping=mapping, direction=direction, dataverse_id__in=dataverse_only)
            .order_by("-created_at", "-id")
            .values_list("dataverse_id", "pk")
        )
        for dataverse_id, pk in rows:
            found.setdefault(dataverse_id, pk)
    return list(found.values())
