"""Coupling services: couple and uncouple records, and run match-based coupling."""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID, uuid4

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from connectors.choices import ConnectionKind
from connectors.types import RemoteClient, WriteOperation
from coupling.matching import MatchOutcome, match_records
from coupling.models import AmbiguousMatch, Coupling, KeptRecord
from mappings.choices import BC, DATAVERSE
from mappings.models import TableMapping


class CouplingRefused(Exception):
    """The coupling would break a rule; the message says which."""


def coupling_create(
    *, mapping: TableMapping, bc_id: UUID, dataverse_id: UUID, bc_name: str = "", dataverse_name: str = ""
) -> Coupling:
    """Couple one Business Central record with one Dataverse row; each may be coupled once per mapping."""
    with transaction.atomic():
        _drop_failed_reservations(mapping, bc_ids=[bc_id], dataverse_ids=[dataverse_id])
        existing = Coupling.objects.select_for_update().filter(table_mapping=mapping)
        taken_bc = existing.filter(bc_id=bc_id).first()
        if taken_bc:
            raise CouplingRefused(
                f"{bc_name or bc_id} is already coupled to {taken_bc.dataverse_name or taken_bc.dataverse_id} "
                f"in {mapping.name}: uncouple it first."
            )
        taken_dv = existing.filter(dataverse_id=dataverse_id).first()
        if taken_dv:
            raise CouplingRefused(
                f"{dataverse_name or dataverse_id} is already coupled to {taken_dv.bc_name or taken_dv.bc_id} "
                f"in {mapping.name}: uncouple it first."
            )
        coupling = Coupling.objects.create(
            table_mapping=mapping,
            bc_id=bc_id,
            dataverse_id=dataverse_id,
            bc_name=bc_name[:250],
            dataverse_name=dataverse_name[:250],
        )
        ambiguous_matches_settle(mapping=mapping, bc_ids=[bc_id], dataverse_ids=[dataverse_id])
    return coupling


def ambiguous_matches_settle(*, mapping: TableMapping, bc_ids, dataverse_ids) -> None:
    """Take records that are coupled now off the mapping's ambiguous matches, on either side."""
    AmbiguousMatch.objects.filter(table_mapping=mapping).filter(
        Q(side=ConnectionKind.BUSINESS_CENTRAL, record_id__in=[i for i in bc_ids if i])
        | Q(side=ConnectionKind.DATAVERSE, record_id__in=[i for i in dataverse_ids if i])
    ).delete()


def _drop_failed_reservations(mapping: TableMapping, *, bc_ids, dataverse_ids) -> None:
    """A record whose creation on the other side failed holds a pending reservation; coupling it replaces that.

    Only failed reservations go: a reservation still open may stand for a write that landed.
    """
    Coupling.objects.filter(table_mapping=mapping).failed_reservations().filter(
        Q(bc_id__in=[i for i in bc_ids if i]) | Q(dataverse_id__in=[i for i in dataverse_ids if i])
    ).delete()


def match_based_coupling_run(
    *, mapping: TableMapping, bc_client: RemoteClient, dataverse_client: RemoteClient, job_id: int | None = None
) -> tuple[MatchOutcome, list[Coupling]]:
    """Couple every uniquely matching pair and record the ambiguous matches; return what was found and made."""
    outcome = match_records(mapping=mapping, bc_client=bc_client, dataverse_client=dataverse_client)
    with transaction.atomic():
        _drop_failed_reservations(
            mapping,
            bc_ids=[UUID(bc.id) for bc, _ in outcome.pairs],
            dataverse_ids=[UUID(dv.id) for _, dv in outcome.pairs],
        )
        created = Coupling.objects.bulk_create(
            [
                Coupling(
                    table_mapping=mapping,
                    bc_id=UUID(bc.id),
                    dataverse_id=UUID(dv.id),
                    bc_name=bc.name[:250],
                    dataverse_name=dv.name[:250],
                )
                for bc, dv in outcome.pairs
            ]
        )
        AmbiguousMatch.objects.filter(table_mapping=mapping).delete()
        AmbiguousMatch.objects.bulk_create(
            [
                AmbiguousMatch(
                    table_mapping=mapping,
                    side=side,
                    record_id=UUID(record.id),
                    record_name=record.name[:250],
                    candidates=[{"id": c.id, "name": c.name, "details": c.details} for c in candidates],
                    job_id=job_id,
                )
                for side, record, candidates in outcome.ambiguous
            ]
        )
    return outcome, created


def coupling_reserve_new_partner(
    *, mapping: TableMapping, bc_id: UUID | None = None, dataverse_id: UUID | None = None, name: str = ""
) -> Coupling:
    """Couple a record to a partner the next records sync creates in the other system (a pending coupling).

    For a Business Central record, the new Dataverse row's id is chosen now (Dataverse accepts it), so a rerun after a
    crash updates the row instead of creating a second one; the engine creates the row for the pending coupling.
    """
    if (bc_id is None) == (dataverse_id is None):
        raise ValueError("Give the record of exactly one system.")
    with transaction.atomic():
        if bc_id is not None:
            if Coupling.objects.filter(table_mapping=mapping, bc_id=bc_id).exists():
                raise CouplingRefused(f"{name or bc_id} is already coupled in {mapping.name}: uncouple it first.")
            coupling = Coupling.objects.create(
                table_mapping=mapping,
                bc_id=bc_id,
                dataverse_id=uuid4(),
                bc_name=name[:250],
                pending=True,
                reserved_at=timezone.now(),
            )
            AmbiguousMatch.objects.filter(
                table_mapping=mapping, side=ConnectionKind.BUSINESS_CENTRAL, record_id=bc_id
            ).delete()
        else:
            assert dataverse_id is not None  # exactly one of the two ids was given (checked above)
            if Coupling.objects.filter(table_mapping=mapping, dataverse_id=dataverse_id).exists():
                raise CouplingRefused(
                    f"{name or dataverse_id} is already coupled in {mapping.name}: uncouple it first."
                )
            coupling = Coupling.objects.create(
                table_mapping=mapping,
                dataverse_id=dataverse_id,
                dataverse_name=name[:250],
                pending=True,
                reserved_at=timezone.now(),
            )
            AmbiguousMatch.objects.filter(
                table_mapping=mapping, side=ConnectionKind.DATAVERSE, record_id=dataverse_id
            ).delete()
    return coupling


def couplings_missing_partners(*, couplings, bc_client: RemoteClient, dataverse_client: RemoteClient) -> dict:
    """Return {coupling pk: "bc" | "dataverse" | "both"} for couplings whose record is gone from a system.

    Reads each mapping's records in one request per system (not one per coupling).
    """
    missing: dict[int, str] = {}
    by_mapping: dict[int, list[Coupling]] = {}
    for coupling in couplings:
        by_mapping.setdefault(coupling.table_mapping_id, []).append(coupling)
    for group in by_mapping.values():
        mapping = group[0].table_mapping
        bc_ids = [c.bc_id for c in group if c.bc_id]
        dv_ids = [c.dataverse_id for c in group if c.dataverse_id]
        bc_found = set(bc_client.read_by_ids(mapping.bc_entity_set, bc_ids, select=["id"])) if bc_ids else set()
        dv_found = (
            set(
                dataverse_client.read_by_ids(
                    mapping.dataverse_entity_set, dv_ids, select=[mapping.dataverse_primary_key]
                )
            )
            if dv_ids
            else set()
        )
        bc_found = {UUID(str(i)) for i in bc_found}
        dv_found = {UUID(str(i)) for i in dv_found}
        for coupling in group:
            bc_gone = coupling.bc_id not in bc_found
            dv_gone = coupling.dataverse_id not in dv_found
            if bc_gone or dv_gone:
                missing[coupling.pk] = "both" if (bc_gone and dv_gone) else (BC if bc_gone else DATAVERSE)
    return missing


def coupling_prepare_restore(*, coupling: Coupling, missing_side: str) -> None:
    """Mark a coupling whose partner was deleted so the next records sync from the surviving side recreates it."""
    Coupling.objects.filter(pk=coupling.pk).prepare_restore(missing_side, timezone.now())


def coupling_delete_surviving_record(*, coupling: Coupling, surviving_side: str, client: RemoteClient) -> None:
    """Delete the record that is left after its partner was deleted in the other system, then the coupling.

    Uses the record's ETag as stored after our last sync: a record changed since then is not deleted blindly.
    """
    mapping = coupling.table_mapping
    if surviving_side == BC:
        entity_set, record_id, etag = mapping.bc_entity_set, coupling.bc_id, coupling.bc_etag
    else:
        entity_set, record_id, etag = mapping.dataverse_entity_set, coupling.dataverse_id, coupling.dataverse_etag
    operation = WriteOperation(
        kind="delete", entity_set=entity_set, ref="surviving", record_id=record_id, etag=etag or None
    )
    (result,) = client.write_many([operation])
    if not result.ok:
        reason = result.error.message if result.error else "no reason given"
        raise CouplingRefused(f"Could not delete {coupling}: {reason}")
    coupling.delete()


class Uncoupled(NamedTuple):
    uncoupled: int
    cleared: int  # Dataverse rows that lost this company's stamp and belong to no company now
    handed_over: int  # rows that passed to another company still coupling them


def couplings_uncouple(*, mapping: TableMapping, couplings, dataverse_client: RemoteClient | None) -> Uncoupled:
    """Remove couplings of a mapping; the records stay in both systems.

    As Business Central does (domain.md 3.10, CDS Int. Table Uncouple), a Dataverse row stamped with this mapping's
    company loses the stamp: it belongs to no company again, so any company may couple it. A row another company
    stamped keeps its company. A row that another company's mapping still couples (a customer the companies share)
    passes to that company instead: a row of no company would be read, and coupled again, by every company. A row
    that cannot be cleared (deleted since) is uncoupled all the same.

    Any earlier choice to keep these records uncoupled (KeptRecord) is forgotten: it was made for an uncoupling
    before the records were coupled again, and this one may not be for the same reason.
    """
    pairs = list(couplings.values_list("pk", "dataverse_id"))
    records = list(couplings.values_list("bc_id", "dataverse_id"))
    kept = KeptRecord.objects.filter(table_mapping=mapping)
    for start in range(0, len(records), 500):
        batch = records[start : start + 500]
        kept.filter(side=ConnectionKind.BUSINESS_CENTRAL, record_id__in=[b for b, _ in batch if b]).delete()
        kept.filter(side=ConnectionKind.DATAVERSE, record_id__in=[d for _, d in batch if d]).delete()
    cleared = handed_over = 0
    reference = mapping.company_reference()
    if reference is not None and dataverse_client is not None and pairs:
        column = mapping.dataverse_company_field
        row_id = str(mapping.company.dataverse_company_id) if mapping.company else ""
        ids = [dataverse_id for _, dataverse_id in pairs if dataverse_id is not None]
        rows = {}
        for start in range(0, len(ids), 100):
            rows.update(
                dataverse_client.read_by_ids(
                    mapping.dataverse_entity_set, ids[start : start + 100], select=[f"_{column}_value"]
                )
            )
        stamped = [
            dataverse_id
            for dataverse_id, row in rows.items()
            if str(row.get(f"_{column}_value") or "").lower() == row_id.lower()
        ]
        keepers = _companies_still_coupling(mapping, stamped, leaving=[pk for pk, _ in pairs])
        operations = [
            WriteOperation(
                kind="update",
                entity_set=mapping.dataverse_entity_set,
                ref=str(dataverse_id),
                record_id=dataverse_id,
                values={f"{column}@odata.bind": keepers.get(str(dataverse_id).lower())},
            )
            for dataverse_id in stamped
        ]
        if operations:
            for operation, result in zip(operations, dataverse_client.write_many(operations), strict=True):
                if result.ok and operation.values[f"{column}@odata.bind"] is None:
                    cleared += 1
                elif result.ok:
                    handed_over += 1
    Coupling.objects.filter(pk__in=[pk for pk, _ in pairs]).delete()
    return Uncoupled(len(pairs), cleared, handed_over)


def _companies_still_coupling(mapping: TableMapping, dataverse_ids: list, *, leaving: list[int]) -> dict[str, str]:
    """For each of the rows another company's mapping of the same table still couples, that company's `@odata.bind`
    reference (the lowest mapping id first, so the choice is stable)."""
    if not dataverse_ids:
        return {}
    others = (
        Coupling.objects.filter(
            dataverse_id__in=dataverse_ids,
            table_mapping__dataverse_entity_set=mapping.dataverse_entity_set,
            table_mapping__company__isnull=False,
        )
        .exclude(pk__in=leaving)
        .exclude(table_mapping__company=mapping.company_id)
        .select_related("table_mapping__company")
        .order_by("table_mapping_id")
    )
    keepers: dict[str, str] = {}
    for coupling in others:
        reference = coupling.table_mapping.company_reference()
        if reference is not None:
            keepers.setdefault(str(coupling.dataverse_id).lower(), reference)
    return keepers
