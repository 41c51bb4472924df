"""The full synchronization review: per mapping, what a first synchronization should do (domain.md 3.9).

A full synchronization reads every record under a mapping's filters; it rewrites the coupled ones and, for an
uncoupled one, couples it to the one uncoupled record its match fields single out, or creates it in the other system
(an ambiguous match fails and waits under Ambiguous matches). So what it would do depends on the record counts on
both sides, how many of them are coupled, and whether the mapping has match fields: without them, uncoupled records
on both sides become duplicates of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.types import ConnectorError, RemoteClient
from coupling.matching import match_criteria
from coupling.models import Coupling
from jobs.services import mappings_in_dependency_order
from mappings.models import TableMapping

FULL_SYNC = "Full synchronization"
COUPLE_FIRST = "Couple records first"
NOTHING = "Nothing to synchronize"


@dataclass
class ReviewLine:
    mapping: TableMapping
    bc_count: int | None
    dataverse_count: int | None
    recommendation: str
    reason: str
    coupled_count: int | None = None
    match_fields: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class MappingState:
    """What the recommendation is made from: one mapping's counts under its filters, couplings and match fields."""

    mapping: TableMapping
    bc_count: int
    dataverse_count: int
    coupled_count: int
    match_fields: list[tuple[str, str]]  # (Business Central field, Dataverse column)

    @property
    def uncoupled_bc(self) -> int:
        # Couplings are not counted per filter: one whose record left the filter makes this an estimate from below.
        return max(self.bc_count - self.coupled_count, 0)

    @property
    def uncoupled_dataverse(self) -> int:
        return max(self.dataverse_count - self.coupled_count, 0)


def match_fields(mapping: TableMapping) -> list[tuple[str, str]]:
    """The field pairs a synchronization matches uncoupled records on (as the engine reads them)."""
    return [(fm.bc_field, fm.dataverse_field) for group in match_criteria(mapping) for fm in group]


def recommend(state: MappingState) -> tuple[str, str]:
    """The recommendation for one mapping, and why, in the mapping's own table names."""
    mapping = state.mapping
    bc_set, dv_set = f"Business Central {mapping.bc_entity_set}", f"Dataverse {mapping.dataverse_entity_set}"
    counts = f"{bc_set}: {state.bc_count}, {dv_set}: {state.dataverse_count}, coupled: {state.coupled_count}"
    uncoupled_bc, uncoupled_dv = state.uncoupled_bc, state.uncoupled_dataverse
    # What a full synchronization reads: the uncoupled records on the sides the mapping synchronizes from.
    to_read_bc = uncoupled_bc if mapping.syncs_to_dataverse else 0
    to_read_dv = uncoupled_dv if mapping.syncs_from_dataverse else 0

    if state.bc_count == 0 and state.dataverse_count == 0:
        return NOTHING, f"Neither {bc_set} nor {dv_set} has records under the mapping's filters."
    if uncoupled_bc == 0 and uncoupled_dv == 0:
        return NOTHING, (
            f"Every record on both sides is coupled ({counts}): the modified-records runs keep them in step."
        )
    if not to_read_bc and not to_read_dv:
        side, only = (dv_set, "to Dataverse") if uncoupled_dv else (bc_set, "from Dataverse")
        return NOTHING, (
            f"The uncoupled {side} records stay as they are: {mapping.name} synchronizes only {only} ({counts}). "
            "The modified-records runs keep the coupled ones in step."
        )
    if uncoupled_bc and uncoupled_dv:
        if not state.match_fields:
            return COUPLE_FIRST, (
                f"Both sides have uncoupled records ({counts}) and {mapping.name} has no match fields: first couple "
                f"the {bc_set} and {dv_set} records that are the same (match-based coupling), or a full "
                "synchronization creates a second copy of each in the other system."
            )
        on = ", ".join(f"{bc_field} = {dv_field}" for bc_field, dv_field in state.match_fields)
        return FULL_SYNC, (
            f"Both sides have uncoupled records ({counts}): a full synchronization couples the ones whose match "
            f"fields ({on}) single out one record on the other side, creates the others there, and lists ambiguous "
            "matches under Ambiguous matches instead of creating duplicates."
        )
    # Uncoupled records on one side only, one the mapping synchronizes from.
    source, target, other_count = (
        ("Business Central", dv_set, state.dataverse_count) if to_read_bc else ("Dataverse", bc_set, state.bc_count)
    )
    if other_count == 0:
        return FULL_SYNC, f"Only {source} has records ({counts}): a full synchronization copies them to {target}."
    return FULL_SYNC, (
        f"Only {source} has uncoupled records ({counts}): a full synchronization creates them in {target}."
    )


def full_sync_review(
    *, bc_client: RemoteClient, dataverse_client: RemoteClient, company_id: int | None = None
) -> list[ReviewLine]:
    """One line per mapping of one company (`company_id`; every mapping when None), counted on its company."""
    lines = []
    for mapping in mappings_in_dependency_order():
        if company_id is not None and mapping.company_id != company_id:
            continue
        coupled = Coupling.objects.filter(table_mapping=mapping, pending=False).count()
        fields = match_fields(mapping)
        try:
            bc_count = bc_client.count(mapping.bc_entity_set, filter=mapping.table_filter or None)
            dataverse_count = dataverse_client.count(
                mapping.dataverse_entity_set, filter=mapping.dataverse_filter or None
            )
        except ConnectorError as exc:
            lines.append(ReviewLine(mapping, None, None, "", f"Could not count the records: {exc}", coupled, fields))
            continue
        recommendation, reason = recommend(MappingState(mapping, bc_count, dataverse_count, coupled, fields))
        lines.append(ReviewLine(mapping, bc_count, dataverse_count, recommendation, reason, coupled, fields))
    return lines
