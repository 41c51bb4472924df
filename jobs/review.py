"""The full synchronization review: per mapping, what a first synchronization should do (domain.md 3.9)."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.types import ConnectorError, RemoteClient
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


def recommend(bc_count: int, dataverse_count: int) -> tuple[str, str]:
    """Full synchronization only when one side is empty: otherwise it would create duplicates of shared records."""
    if bc_count == 0 and dataverse_count == 0:
        return NOTHING, "Both sides are empty under the mapping's filters."
    if bc_count and dataverse_count:
        return COUPLE_FIRST, (
            "Both sides have records: couple the ones that are the same company first (match-based coupling), "
            "or a full synchronization creates duplicates."
        )
    side = "Business Central" if bc_count else "Dataverse"
    return FULL_SYNC, f"Only {side} has records: a full synchronization copies them to the other side."


def full_sync_review(*, bc_client: RemoteClient, dataverse_client: RemoteClient) -> list[ReviewLine]:
    lines = []
    for mapping in mappings_in_dependency_order():
        try:
            bc_count = bc_client.count(mapping.bc_entity_set, filter=mapping.table_filter or None)
            dataverse_count = dataverse_client.count(
                mapping.dataverse_entity_set, filter=mapping.integration_table_filter or None
            )
        except ConnectorError as exc:
            lines.append(ReviewLine(mapping, None, None, "", f"Could not count the records: {exc}"))
            continue
        recommendation, reason = recommend(bc_count, dataverse_count)
        lines.append(ReviewLine(mapping, bc_count, dataverse_count, recommendation, reason))
    return lines
