"""What the coupling, mapping and error pages of jobs share: one client per system for a page, the sync choices of a
mapping, queuing a records sync of one coupling, and the actions on coupled records whose partner was deleted
(restore it, or delete the survivor). Defines no ModelAdmin.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.contrib import admin, messages

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from connectors.types import ConnectorError
from coupling.models import Coupling
from coupling.services import (
    CouplingRefused,
    coupling_delete_surviving_record,
    coupling_prepare_restore,
    couplings_missing_partners,
)
from jobs.choices import JobKind
from jobs.models import SyncJob
from jobs.services import SyncNotStarted, sync_enqueue
from mappings.choices import BC, DATAVERSE, Direction
from mappings.models import TableMapping

SYNC_CHOICES = [
    ("", "Do not synchronize"),
    (Direction.TO_DATAVERSE, "Synchronize now: Business Central → Dataverse"),
    (Direction.FROM_DATAVERSE, "Synchronize now: Dataverse → Business Central"),
]


@contextmanager
def connected_clients():
    """One client per system for one page; raises with a readable message when a connection is missing."""
    bc = open_client(Connection.objects.active(ConnectionKind.BUSINESS_CENTRAL))
    try:
        dataverse = open_client(Connection.objects.active(ConnectionKind.DATAVERSE))
    except Exception:
        bc.close()
        raise
    try:
        yield bc, dataverse
    finally:
        bc.close()
        dataverse.close()


def client_for(system, bc, dataverse):
    return bc if system == BC else dataverse


def sync_choices(mapping: TableMapping) -> list[tuple[str, str]]:
    allowed = {"", *([Direction.TO_DATAVERSE] if mapping.syncs_to_dataverse else [])}
    if mapping.syncs_from_dataverse:
        allowed.add(Direction.FROM_DATAVERSE)
    return [choice for choice in SYNC_CHOICES if choice[0] in allowed]


def dependency_names(mapping: TableMapping) -> str:
    """The mappings whose couplings this mapping's lookups need ("CURRENCY, SALESPEOPLE"), or ""."""
    return ", ".join(sorted(mapping.dependencies.values_list("name", flat=True)))


def enqueue_records_sync(
    request, mapping: TableMapping, direction: str, coupling: Coupling, *, with_dependencies: bool | None = None
) -> SyncJob | None:
    """Synchronize one coupled record now; the mapping's own job is returned.

    With `with_dependencies` (by default, what the form's "dependencies" box says), the mappings it depends on
    synchronize their modified records first, in the same job, so a lookup not coupled yet gets coupled first."""
    source_id = coupling.bc_id if direction == Direction.TO_DATAVERSE else coupling.dataverse_id
    if with_dependencies is None:
        with_dependencies = bool(request.POST.get("dependencies"))
    try:
        jobs = sync_enqueue(
            mapping=mapping,
            kind=JobKind.RECORDS,
            direction=direction,
            record_ids=[source_id],
            user=request.user,
            with_dependencies=with_dependencies,
        )
    except SyncNotStarted as exc:
        messages.error(request, str(exc))
        return None
    (job,) = [job for job in jobs if job.table_mapping_id == mapping.pk]
    return job


def missing_partners(modeladmin, request, queryset):
    couplings = list(queryset.select_related("table_mapping"))
    try:
        with connected_clients() as (bc, dataverse):
            return couplings, couplings_missing_partners(couplings=couplings, bc_client=bc, dataverse_client=dataverse)
    except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
        modeladmin.message_user(request, f"Could not check the records: {exc}", messages.ERROR)
        return couplings, None


@admin.action(
    description="Restore the deleted partner (recreate it from the surviving record)", permissions=["run_sync"]
)
def restore_deleted_partners(modeladmin, request, queryset):
    couplings, missing = missing_partners(modeladmin, request, queryset)
    if missing is None:
        return
    restored = 0
    for coupling in couplings:
        side = missing.get(coupling.pk)
        if side not in (BC, DATAVERSE):
            continue
        coupling_prepare_restore(coupling=coupling, missing_side=side)
        coupling.refresh_from_db()
        direction = Direction.TO_DATAVERSE if side == DATAVERSE else Direction.FROM_DATAVERSE
        if enqueue_records_sync(request, coupling.table_mapping, direction, coupling):
            restored += 1
    untouched = len(couplings) - restored
    modeladmin.message_user(
        request,
        f"Restoring {restored} deleted record(s) from their partners."
        + (f" {untouched} coupling(s) have both records (or neither) and were left alone." if untouched else ""),
        messages.SUCCESS if restored else messages.WARNING,
    )


@admin.action(description="Delete the surviving record (its partner was deleted)", permissions=["run_sync"])
def delete_surviving_records(modeladmin, request, queryset):
    couplings, missing = missing_partners(modeladmin, request, queryset)
    if missing is None:
        return
    deleted = 0
    with connected_clients() as (bc, dataverse):
        for coupling in couplings:
            side = missing.get(coupling.pk)
            if side not in (BC, DATAVERSE):
                continue
            surviving = DATAVERSE if side == BC else BC
            try:
                coupling_delete_surviving_record(
                    coupling=coupling, surviving_side=surviving, client=client_for(surviving, bc, dataverse)
                )
                deleted += 1
            except CouplingRefused as exc:
                modeladmin.message_user(request, str(exc), messages.ERROR)
    untouched = len(couplings) - deleted
    modeladmin.message_user(
        request,
        f"Deleted {deleted} surviving record(s) and their couplings."
        + (f" {untouched} coupling(s) still have both records and were left alone." if untouched else ""),
        messages.SUCCESS if deleted else messages.WARNING,
    )
