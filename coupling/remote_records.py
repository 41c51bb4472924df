"""Read a mapping's records of either system for the coupling pages: search, table-filter membership, suggestions.

One request per list (never one per record); at most LIST_SIZE rows per side, which is what a page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from connectors.odata import and_filters, as_uuid, contains, eq, eq_any
from connectors.types import RemoteClient
from coupling.matching import NoMatchCriteria, details_text, identifying_fields, match_groups
from coupling.models import Coupling
from mappings.choices import BC, DATAVERSE
from mappings.models import TableMapping

LIST_SIZE = 25


@dataclass
class Record:
    system: str
    id: UUID
    name: str
    values: dict = field(default_factory=dict)
    outside_filter: bool = False
    coupled_to: str = ""  # the partner's name (or id) when the record is coupled in this mapping
    coupling_id: int | None = None
    reason: str = ""  # why it is suggested
    details: str = ""  # number, city, e-mail: what tells it apart from a record of the same name


@dataclass(frozen=True)
class SideSpec:
    system: str
    label: str
    entity_set: str
    id_field: str
    name_field: str
    table_filter: str
    detail_fields: tuple[str, ...] = ()  # read with the name, shown under it (coupling.matching.identifying_fields)


def side_spec(mapping: TableMapping, system: str) -> SideSpec:
    if system == BC:
        return SideSpec(
            BC,
            "Business Central",
            mapping.bc_entity_set,
            "id",
            mapping.bc_name_field,
            mapping.table_filter,
            tuple(identifying_fields(mapping, "bc")),
        )
    return SideSpec(
        DATAVERSE,
        "Dataverse",
        mapping.dataverse_entity_set,
        mapping.dataverse_primary_key,
        mapping.dataverse_name_field,
        mapping.dataverse_filter,
        tuple(identifying_fields(mapping, "dataverse")),
    )


def _first_page(client: RemoteClient, spec: SideSpec, flt: str | None, select: list[str], size=LIST_SIZE) -> list:
    pages = client.read_pages(spec.entity_set, filter=flt or None, select=select, page_size=size)
    try:
        page = next(iter(pages), None)
    finally:
        close = getattr(pages, "close", None)
        if close:
            close()
    return (page.rows if page else [])[:size]


def _search_filter(spec: SideSpec, text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    record_id = as_uuid(text)
    if record_id:
        return eq(spec.id_field, record_id)
    return contains(spec.name_field, text)


def _to_record(spec: SideSpec, row: dict) -> Record:
    return Record(
        spec.system,
        UUID(str(row[spec.id_field])),
        str(row.get(spec.name_field) or ""),
        values=row,
        details=details_text(row, list(spec.detail_fields)),
    )


def ids_within_filter(client: RemoteClient, spec: SideSpec, ids: list[UUID]) -> set[UUID]:
    """The ids (of at most LIST_SIZE) that pass the mapping's table filter on this side."""
    if not ids:
        return set()
    if not spec.table_filter:
        return set(ids)
    flt = and_filters(spec.table_filter, eq_any(spec.id_field, ids))
    rows = _first_page(client, spec, flt, [spec.id_field], size=len(ids))
    return {UUID(str(row[spec.id_field])) for row in rows}


def annotate_couplings(mapping: TableMapping, records: list[Record]) -> None:
    """Say which records are coupled already, and to what (one query)."""
    for system in (BC, DATAVERSE):
        mine = [r for r in records if r.system == system]
        if not mine:
            continue
        own, other = ("bc_id", "dataverse") if system == BC else ("dataverse_id", "bc")
        rows = Coupling.objects.filter(table_mapping=mapping, **{f"{own}__in": [r.id for r in mine]}).values(
            "pk", own, f"{other}_name", f"{other}_id"
        )
        by_id = {row[own]: row for row in rows}
        for record in mine:
            row = by_id.get(record.id)
            if row:
                record.coupling_id = row["pk"]
                record.coupled_to = row[f"{other}_name"] or str(row[f"{other}_id"] or "a new record (pending)")


def records_search(
    client: RemoteClient, mapping: TableMapping, system: str, text: str = "", *, include_outside: bool = False
) -> list[Record]:
    """Records of one side matching `text` (name contains, or an id): within the table filter, or all of them with
    the ones outside marked."""
    spec = side_spec(mapping, system)
    select = sorted({spec.id_field, spec.name_field, *spec.detail_fields})
    search = _search_filter(spec, text)
    if include_outside and spec.table_filter:
        records = [_to_record(spec, row) for row in _first_page(client, spec, search, select)]
        inside = ids_within_filter(client, spec, [r.id for r in records])
        for record in records:
            record.outside_filter = record.id not in inside
    else:
        rows = _first_page(client, spec, and_filters(spec.table_filter, search), select)
        records = [_to_record(spec, row) for row in rows]
    annotate_couplings(mapping, records)
    return sorted(records, key=lambda r: r.name.casefold())


def record_get(client: RemoteClient, mapping: TableMapping, system: str, record_id: UUID) -> Record | None:
    spec = side_spec(mapping, system)
    row = client.read_by_ids(spec.entity_set, [record_id]).get(record_id)
    if row is None:
        return None
    record = _to_record(spec, row)
    record.outside_filter = record_id not in ids_within_filter(client, spec, [record_id])
    annotate_couplings(mapping, [record])
    return record


def partner_suggestions(client: RemoteClient, mapping: TableMapping, record: Record, limit: int = 10) -> list[Record]:
    """Records of the other system that could be `record`'s partner, best first.

    Ranked by the mapping's match-based coupling criteria, one query per priority group (all fields of a group must
    agree); without criteria, by the record's name. Only records within the other side's table filter.
    """
    other = side_spec(mapping, DATAVERSE if record.system == BC else BC)
    try:
        groups = [[(fm.bc_field, fm.dataverse_field) for fm in group] for group in match_groups(mapping)]
    except NoMatchCriteria:
        groups = [[(mapping.bc_name_field, mapping.dataverse_name_field)]]
    select = sorted({other.id_field, other.name_field, *other.detail_fields})
    found: dict[UUID, Record] = {}
    for group in groups:
        conditions: list[str] = []
        reasons: list[str] = []
        for bc_field, dv_field in group:
            own_field, other_field = (bc_field, dv_field) if record.system == BC else (dv_field, bc_field)
            value = record.values.get(own_field)
            if value in (None, ""):
                conditions = []
                break
            conditions.append(eq(other_field, value))
            reasons.append(f"{other_field} = {value}")
        if not conditions:
            continue
        for row in _first_page(client, other, and_filters(other.table_filter, *conditions), select, size=limit):
            candidate = _to_record(other, row)
            if candidate.id not in found:
                candidate.reason = "same " + ", ".join(reasons)
                found[candidate.id] = candidate
        if len(found) >= limit:
            break
    suggestions = list(found.values())[:limit]
    annotate_couplings(mapping, suggestions)
    return suggestions
