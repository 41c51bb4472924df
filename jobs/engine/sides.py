"""The two sides of a table mapping, seen from one run direction (source -> target).

Keeps every "if Business Central ... else Dataverse" of the engine in one place: ids, modified-on, ETags, names,
how a coupling stores each side, and how a lookup is read and written on each side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.utils.dateparse import parse_datetime

from connectors.choices import ConnectionKind
from mappings.choices import BC, DATAVERSE, SIDE_KIND, SIDE_LABEL, Direction
from mappings.models import TableMapping

ZERO_GUID = "00000000-0000-0000-0000-000000000000"

Row = dict[str, Any]  # one record as the service returns it (OData JSON)


@dataclass(frozen=True)
class Side:
    system: str  # BC or DATAVERSE
    entity_set: str
    id_field: str
    modified_field: str
    name_field: str
    table_filter: str

    @property
    def is_dataverse(self) -> bool:
        return self.system == DATAVERSE

    @property
    def kind(self) -> ConnectionKind:
        return SIDE_KIND[self.system]

    @property
    def label(self) -> str:
        return SIDE_LABEL[self.system]

    # Coupling columns for this side: bc_id / dataverse_id, bc_etag, bc_modified_on, bc_name.
    def coupling_attr(self, suffix: str) -> str:
        return f"{self.system}_{suffix}"

    def row_id(self, row: Row) -> UUID:
        return UUID(str(row[self.id_field]))

    def row_etag(self, row: Row) -> str:
        return str(row.get("@odata.etag") or "")

    def row_modified(self, row: Row) -> datetime | None:
        raw = row.get(self.modified_field)
        if isinstance(raw, str):
            return parse_datetime(raw)
        return raw if isinstance(raw, datetime) else None

    def row_name(self, row: Row) -> str:
        return str(row.get(self.name_field) or "")[:250]

    def read_field_name(self, field: str, *, is_lookup: bool) -> str:
        """The property to $select and read: Dataverse lookups are read as `_x_value`."""
        return f"_{field}_value" if (self.is_dataverse and is_lookup) else field


def sides_for(mapping: TableMapping, direction: str) -> tuple[Side, Side]:
    """Return (source, target) for a run of `mapping` in `direction` (to or from Dataverse)."""
    bc = Side(
        system=BC,
        entity_set=mapping.bc_entity_set,
        id_field="id",
        modified_field="lastModifiedDateTime",
        name_field=mapping.bc_name_field,
        table_filter=mapping.table_filter,
    )
    dataverse = Side(
        system=DATAVERSE,
        entity_set=mapping.dataverse_entity_set,
        id_field=mapping.dataverse_primary_key,
        modified_field="modifiedon",
        name_field=mapping.dataverse_name_field,
        table_filter=mapping.dataverse_filter,  # with "its company or none" for a company's mapping
    )
    if direction == Direction.TO_DATAVERSE:
        return bc, dataverse
    if direction == Direction.FROM_DATAVERSE:
        return dataverse, bc
    raise ValueError(f"A run has one direction, to or from Dataverse, not {direction!r}.")


def run_directions(mapping: TableMapping) -> list[str]:
    """Directions a modified-records run of this mapping covers, in Business Central's order (To, then From)."""
    directions: list[str] = []
    if mapping.syncs_to_dataverse:
        directions.append(Direction.TO_DATAVERSE)
    if mapping.syncs_from_dataverse:
        directions.append(Direction.FROM_DATAVERSE)
    return directions
