"""Match-based coupling: pair uncoupled records of the two systems whose match fields agree.

Better than Business Central's (domain.md 4.2): both sides are read once, page by page, and matched in memory
(no query per record); a pair is coupled only when the match is unique in both directions, and ambiguous matches
are kept with their candidates so an administrator can couple them by a click.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import groupby

from connectors.types import RemoteClient
from coupling.models import Coupling
from mappings.models import FieldMapping, TableMapping

NAME_SAMPLE = 5


class NoMatchCriteria(Exception):
    pass


@dataclass
class Candidate:
    id: str
    name: str


@dataclass
class MatchOutcome:
    pairs: list[tuple[Candidate, Candidate]] = field(default_factory=list)  # (Business Central, Dataverse)
    ambiguous: list[tuple[str, Candidate, list[Candidate]]] = field(default_factory=list)  # (side, record, candidates)
    unmatched_bc: list[Candidate] = field(default_factory=list)
    unmatched_dataverse: list[Candidate] = field(default_factory=list)


def match_groups(mapping: TableMapping) -> list[list[FieldMapping]]:
    """Match criteria grouped by priority, lowest first; criteria of one priority must all agree."""
    criteria = list(mapping.field_mappings.match_criteria())
    if not criteria:
        raise NoMatchCriteria(
            f"Choose the fields that identify a record for {mapping.name} (tick 'use for match-based coupling' on "
            "its field mappings) before running match-based coupling."
        )
    return [list(group) for _, group in groupby(criteria, key=lambda fm: fm.match_priority)]


def _normalize(value, case_sensitive: bool):
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return text if case_sensitive else text.casefold()


def match_key(row: dict, fields: list[tuple[str, bool]]):
    """The row's values of the match fields, normalized; None when one is blank (blank never matches, as BC)."""
    parts = tuple(_normalize(row.get(name), case_sensitive) for name, case_sensitive in fields)
    return None if any(part is None for part in parts) else parts


def _uncoupled_rows(client: RemoteClient, entity_set: str, id_field: str, name_field: str, flt: str, select, coupled):
    rows = {}
    for page in client.read_pages(entity_set, filter=flt or None, select=sorted({id_field, name_field, *select})):
        for row in page.rows:
            row_id = str(row[id_field]).lower()
            if row_id not in coupled:
                rows[row_id] = row
    return rows


def match_records(*, mapping: TableMapping, bc_client: RemoteClient, dataverse_client: RemoteClient) -> MatchOutcome:
    """Find the uncoupled pairs that match uniquely, and the ambiguous ones, without writing anything."""
    groups = match_groups(mapping)
    # Pending couplings are reservations of records not created yet on the other side: still open for matching.
    couplings = Coupling.objects.filter(table_mapping=mapping, pending=False)
    coupled_bc = {str(i) for i in couplings.values_list("bc_id", flat=True) if i}
    coupled_dv = {str(i) for i in couplings.values_list("dataverse_id", flat=True) if i}
    bc_fields = {fm.bc_field for group in groups for fm in group}
    dv_fields = {fm.dataverse_field for group in groups for fm in group}
    bc_rows = _uncoupled_rows(
        bc_client, mapping.bc_entity_set, "id", mapping.bc_name_field, mapping.table_filter, bc_fields, coupled_bc
    )
    dv_rows = _uncoupled_rows(
        dataverse_client,
        mapping.dataverse_entity_set,
        mapping.dataverse_primary_key,
        mapping.dataverse_name_field,
        mapping.integration_table_filter,
        dv_fields,
        coupled_dv,
    )

    def bc_candidate(row_id):
        return Candidate(row_id, str(bc_rows[row_id].get(mapping.bc_name_field) or ""))

    def dv_candidate(row_id):
        return Candidate(row_id, str(dv_rows[row_id].get(mapping.dataverse_name_field) or ""))

    outcome = MatchOutcome()
    open_bc, open_dv = set(bc_rows), set(dv_rows)
    reported_bc, reported_dv = set(), set()
    for group in groups:
        bc_spec = [(fm.bc_field, fm.case_sensitive_matching) for fm in group]
        dv_spec = [(fm.dataverse_field, fm.case_sensitive_matching) for fm in group]
        bc_by_key, dv_by_key = defaultdict(list), defaultdict(list)
        for row_id in open_bc:
            key = match_key(bc_rows[row_id], bc_spec)
            if key is not None:
                bc_by_key[key].append(row_id)
        for row_id in open_dv:
            key = match_key(dv_rows[row_id], dv_spec)
            if key is not None:
                dv_by_key[key].append(row_id)
        for key, bc_ids in bc_by_key.items():
            dv_ids = dv_by_key.get(key, [])
            if len(bc_ids) == 1 and len(dv_ids) == 1:
                outcome.pairs.append((bc_candidate(bc_ids[0]), dv_candidate(dv_ids[0])))
                open_bc.discard(bc_ids[0])
                open_dv.discard(dv_ids[0])
                reported_bc.discard(bc_ids[0])
                reported_dv.discard(dv_ids[0])
            elif dv_ids:
                # Several records share the key on one side or both: list each with its candidates.
                for bc_id in bc_ids:
                    if bc_id not in reported_bc:
                        reported_bc.add(bc_id)
                        candidates = [dv_candidate(i) for i in dv_ids]
                        outcome.ambiguous.append(("bc", bc_candidate(bc_id), candidates))
                if len(bc_ids) > 1 and len(dv_ids) == 1 and dv_ids[0] not in reported_dv:
                    reported_dv.add(dv_ids[0])
                    outcome.ambiguous.append(("dataverse", dv_candidate(dv_ids[0]), [bc_candidate(i) for i in bc_ids]))
    outcome.ambiguous = [
        item
        for item in outcome.ambiguous
        if (item[0] == "bc" and item[1].id in open_bc) or (item[0] == "dataverse" and item[1].id in open_dv)
    ]
    ambiguous_bc = {item[1].id for item in outcome.ambiguous if item[0] == "bc"}
    ambiguous_dv = {item[1].id for item in outcome.ambiguous if item[0] == "dataverse"}
    outcome.unmatched_bc = [bc_candidate(i) for i in sorted(open_bc - ambiguous_bc)]
    outcome.unmatched_dataverse = [dv_candidate(i) for i in sorted(open_dv - ambiguous_dv)]
    return outcome
