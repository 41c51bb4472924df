"""Matching: pair uncoupled records of the two systems whose match fields agree.

One rule, used by match-based coupling (here, whole tables) and by a synchronization (the engine, a page at a
time): a pair is coupled only when the match is unique both ways among the uncoupled records, and a record whose
match is shared is listed as ambiguous with its candidates, so an administrator can couple it by a click.

Better than Business Central's (domain.md 4.2): both sides are read once, page by page, and matched in memory
(no query per record).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, Generic, TypeVar

from connectors.choices import ConnectionKind
from connectors.types import RemoteClient
from coupling.models import Coupling
from mappings.models import TableMapping

Row = Mapping[str, Any]
MatchKey = tuple[str, ...]
S = TypeVar("S", bound=Hashable)  # a source record's id
T = TypeVar("T", bound=Hashable)  # a target record's id


class NoMatchCriteria(Exception):
    pass


@dataclass(frozen=True)
class MatchField:
    """One match criterion: the field of each system, and whether letter case must agree."""

    bc_field: str
    dataverse_field: str
    case_sensitive: bool

    def field_of(self, kind: ConnectionKind) -> str:
        return self.dataverse_field if kind == ConnectionKind.DATAVERSE else self.bc_field


# Criteria of one priority must all agree; a lower priority is tried first.
MatchGroup = list[MatchField]


def match_criteria(mapping: TableMapping) -> list[MatchGroup]:
    """The mapping's match criteria grouped by priority, lowest first (empty when it has none)."""
    criteria = mapping.field_mappings.match_criteria()
    return [
        [MatchField(fm.bc_field, fm.dataverse_field, fm.case_sensitive_matching) for fm in group]
        for _, group in groupby(criteria, key=lambda fm: fm.match_priority)
    ]


def match_groups(mapping: TableMapping) -> list[MatchGroup]:
    """The match criteria, for match-based coupling, which cannot run without them."""
    groups = match_criteria(mapping)
    if not groups:
        raise NoMatchCriteria(
            f"Choose the fields that identify a record for {mapping.name} (tick 'use for match-based coupling' on "
            "its field mappings) before running match-based coupling."
        )
    return groups


def _normalize(value: Any, case_sensitive: bool) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    return text if case_sensitive else text.casefold()


def match_key(row: Row, group: MatchGroup, kind: ConnectionKind) -> MatchKey | None:
    """The row's values of the group's fields in the system of `kind`, normalized; None when one is blank (blank
    never matches, as in Business Central)."""
    parts = tuple(_normalize(row.get(fm.field_of(kind)), fm.case_sensitive) for fm in group)
    if any(part is None for part in parts):
        return None
    return tuple(part for part in parts if part is not None)


@dataclass
class Pairing(Generic[S, T]):
    """What the uniqueness rule found: pairs, and the records whose match is shared, with their candidates."""

    pairs: dict[S, T] = field(default_factory=dict)
    ambiguous_sources: dict[S, list[T]] = field(default_factory=dict)
    # A target record whose key is shared (by several sources or several targets): listed from its own side too.
    ambiguous_targets: dict[T, list[S]] = field(default_factory=dict)


def pair_uniquely(
    groups: list[MatchGroup],
    sources: Mapping[S, Row],
    source_kind: ConnectionKind,
    targets: Mapping[T, Row],
    target_kind: ConnectionKind,
    rivals: Iterable[Row] = (),
) -> Pairing[S, T]:
    """Pair each source record with the one target record its match fields agree with, priority by priority.

    All records given are uncoupled. A pair is made only when the key is unique on both sides and no rival (an
    uncoupled source record not offered for pairing, e.g. outside the engine's page) shares it; records whose key
    is shared wait as ambiguous, and a later priority may still pair them.
    """
    rivals = list(rivals)
    pairing: Pairing[S, T] = Pairing()
    open_sources, open_targets = dict(sources), dict(targets)
    for group in groups:
        by_source_key: dict[MatchKey, list[S]] = {}
        for source_id, row in open_sources.items():
            key = match_key(row, group, source_kind)
            if key is not None:
                by_source_key.setdefault(key, []).append(source_id)
        by_target_key: dict[MatchKey, list[T]] = {}
        for target_id, row in open_targets.items():
            key = match_key(row, group, target_kind)
            if key is not None:
                by_target_key.setdefault(key, []).append(target_id)
        claimed_elsewhere = Counter(match_key(row, group, source_kind) for row in rivals)
        for key, source_ids in by_source_key.items():
            target_ids = by_target_key.get(key, [])
            if len(source_ids) == 1 and len(target_ids) == 1 and not claimed_elsewhere[key]:
                pairing.pairs[source_ids[0]] = target_ids[0]
                del open_sources[source_ids[0]]
                del open_targets[target_ids[0]]
            elif target_ids:
                for source_id in source_ids:
                    pairing.ambiguous_sources.setdefault(source_id, target_ids)
                # Every target record of a shared key is ambiguous too, seen from its side: one customer and two
                # accounts of its name are three ambiguous records, as a run in each direction finds them. (A key
                # unique on both sides but claimed by a rival outside the page is the rival's matter, not the target's.)
                if len(source_ids) > 1 or len(target_ids) > 1:
                    for target_id in target_ids:
                        pairing.ambiguous_targets.setdefault(target_id, source_ids)
    pairing.ambiguous_sources = {i: c for i, c in pairing.ambiguous_sources.items() if i in open_sources}
    pairing.ambiguous_targets = {i: c for i, c in pairing.ambiguous_targets.items() if i in open_targets}
    return pairing


@dataclass
class Candidate:
    id: str
    name: str
    details: str = ""  # number, city, e-mail: what tells apart two candidates of the same name


# Business Central's number of a record, by API entity set (the `No.`/`Code` key of its table), always read: two
# customers named "Garcia LLC" differ by it. The other identifying fields are read when the mapping maps them.
BC_NUMBER_FIELD = {
    "customers": "number",
    "vendors": "number",
    "contacts": "number",
    "items": "number",
    "employees": "number",
    "salespeoplePurchasers": "code",
    "currencies": "code",
    "paymentTerms": "code",
    "shipmentMethods": "code",
}
IDENTIFYING_FIELDS = {
    "bc": ("city", "email"),
    "dataverse": ("accountnumber", "address1_city", "emailaddress1", "internalemailaddress"),
}


def identifying_fields(mapping: TableMapping, side: str) -> list[str]:
    """The fields read to tell records of the same name apart on one side ("bc" or "dataverse"), name excluded."""
    if side == "bc":
        mapped = set(mapping.field_mappings.values_list("bc_field", flat=True))
        number = BC_NUMBER_FIELD.get(mapping.bc_entity_set)
        fields = [number] if number else []
        name_field = mapping.bc_name_field
    else:
        mapped = set(mapping.field_mappings.values_list("dataverse_field", flat=True))
        fields = []
        name_field = mapping.dataverse_name_field
    fields += [name for name in IDENTIFYING_FIELDS[side] if name in mapped]
    return [name for name in dict.fromkeys(fields) if name != name_field]


def details_text(row: Mapping[str, Any], fields: list[str]) -> str:
    """`C00010 · Oslo · garcia@example.com`: the identifying values a row has."""
    return " · ".join(str(row[name]) for name in fields if row.get(name) not in (None, ""))


@dataclass
class MatchOutcome:
    pairs: list[tuple[Candidate, Candidate]] = field(default_factory=list)  # (Business Central, Dataverse)
    # (the system the record is in, the record, its candidates in the other system)
    ambiguous: list[tuple[ConnectionKind, Candidate, list[Candidate]]] = field(default_factory=list)
    unmatched_bc: list[Candidate] = field(default_factory=list)
    unmatched_dataverse: list[Candidate] = field(default_factory=list)
    records_read: int = 0  # uncoupled records read in both systems: each is paired, ambiguous or unmatched


def _uncoupled_rows(
    client: RemoteClient,
    entity_set: str,
    id_field: str,
    name_field: str,
    flt: str,
    select: set[str],
    coupled: set[str],
) -> dict[str, Row]:
    rows: dict[str, Row] = {}
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
    bc_details, dv_details = identifying_fields(mapping, "bc"), identifying_fields(mapping, "dataverse")
    bc_rows = _uncoupled_rows(
        bc_client,
        mapping.bc_entity_set,
        "id",
        mapping.bc_name_field,
        mapping.table_filter,
        bc_fields | set(bc_details),
        coupled_bc,
    )
    dv_rows = _uncoupled_rows(
        dataverse_client,
        mapping.dataverse_entity_set,
        mapping.dataverse_primary_key,
        mapping.dataverse_name_field,
        mapping.dataverse_filter,
        dv_fields | set(dv_details),
        coupled_dv,
    )

    def bc_candidate(row_id: str) -> Candidate:
        row = bc_rows[row_id]
        return Candidate(row_id, str(row.get(mapping.bc_name_field) or ""), details_text(row, bc_details))

    def dv_candidate(row_id: str) -> Candidate:
        row = dv_rows[row_id]
        return Candidate(row_id, str(row.get(mapping.dataverse_name_field) or ""), details_text(row, dv_details))

    pairing = pair_uniquely(groups, bc_rows, ConnectionKind.BUSINESS_CENTRAL, dv_rows, ConnectionKind.DATAVERSE)
    outcome = MatchOutcome(records_read=len(bc_rows) + len(dv_rows))
    outcome.pairs = [(bc_candidate(bc), dv_candidate(dv)) for bc, dv in pairing.pairs.items()]
    outcome.ambiguous = [
        (ConnectionKind.BUSINESS_CENTRAL, bc_candidate(bc), [dv_candidate(i) for i in dvs])
        for bc, dvs in pairing.ambiguous_sources.items()
    ] + [
        (ConnectionKind.DATAVERSE, dv_candidate(dv), [bc_candidate(i) for i in bcs])
        for dv, bcs in pairing.ambiguous_targets.items()
    ]
    paired_bc = {bc.id for bc, _ in outcome.pairs}
    paired_dv = {dv.id for _, dv in outcome.pairs}
    outcome.unmatched_bc = [bc_candidate(i) for i in sorted(set(bc_rows) - paired_bc - set(pairing.ambiguous_sources))]
    outcome.unmatched_dataverse = [
        dv_candidate(i) for i in sorted(set(dv_rows) - paired_dv - set(pairing.ambiguous_targets))
    ]
    return outcome
