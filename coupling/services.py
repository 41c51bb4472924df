"""Coupling services: couple and uncouple records, and run match-based coupling."""

from __future__ import annotations

from uuid import UUID

from django.db import transaction

from connectors.types import RemoteClient
from coupling.matching import MatchOutcome, match_records
from coupling.models import AmbiguousMatch, Coupling
from mappings.models import TableMapping


class CouplingRefused(Exception):
    """The coupling would break a rule; the message says which."""


def coupling_create(
    *, mapping: TableMapping, bc_id: UUID, dataverse_id: UUID, bc_name: str = "", dataverse_name: str = ""
) -> Coupling:
    """Couple one Business Central record with one Dataverse row; each may be coupled once per mapping."""
    with transaction.atomic():
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
        AmbiguousMatch.objects.filter(table_mapping=mapping, side="bc", record_id=bc_id).delete()
        AmbiguousMatch.objects.filter(table_mapping=mapping, side="dataverse", record_id=dataverse_id).delete()
    return coupling


def couplings_delete(*, couplings) -> int:
    """Remove couplings (the records in both systems stay as they are)."""
    deleted, _ = Coupling.objects.filter(pk__in=[c.pk for c in couplings]).delete()
    return deleted


def match_based_coupling_run(
    *, mapping: TableMapping, bc_client: RemoteClient, dataverse_client: RemoteClient, job_id: int | None = None
) -> tuple[MatchOutcome, list[Coupling]]:
    """Couple every uniquely matching pair and record the ambiguous matches; return what was found and made."""
    outcome = match_records(mapping=mapping, bc_client=bc_client, dataverse_client=dataverse_client)
    with transaction.atomic():
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
                    candidates=[{"id": c.id, "name": c.name} for c in candidates],
                    job_id=job_id,
                )
                for side, record, candidates in outcome.ambiguous
            ]
        )
    return outcome, created
