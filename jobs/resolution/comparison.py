"""A coupled pair side by side: both records read, and every mapped field compared as the sync would compare it
(the engine's own field rules, so transformations, value maps and lookups apply)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from jobs.engine.sides import sides_for
from jobs.engine.values import LookupResolver, RecordFailure, compile_rules, current_value, desired_value, values_equal
from mappings.choices import Direction
from mappings.models import TableMapping


@dataclass
class FieldPair:
    field_mapping_id: int
    bc_field: str
    dataverse_field: str
    bc_value: Any
    dataverse_value: Any
    differs: bool
    bidirectional: bool


@dataclass
class Comparison:
    mapping: TableMapping
    bc_row: dict | None = None
    dataverse_row: dict | None = None
    fields: list[FieldPair] = field(default_factory=list)

    @property
    def differing(self) -> list[FieldPair]:
        return [f for f in self.fields if f.differs]


def rules_by_target(mapping: TableMapping, direction: str):
    """The direction's source and target sides, and its compiled field rules by target field."""
    source, target = sides_for(mapping, direction)
    return source, target, {rule.target_field: rule for rule in compile_rules(mapping, direction, source, target)}


def compared_field_mappings(mapping: TableMapping):
    """The enabled field mappings with a field on both sides, in their order."""
    return [
        fm
        for fm in mapping.field_mappings.filter(enabled=True).order_by("position", "id")
        if fm.bc_field and fm.dataverse_field
    ]


def records_compare(
    *, mapping: TableMapping, bc_id: UUID | None, dataverse_id: UUID | None, bc_client, dataverse_client
) -> Comparison:
    """Read both records (one request each) and compare every mapped field as the sync would."""
    comparison = Comparison(mapping)
    if bc_id:
        comparison.bc_row = bc_client.read_by_ids(mapping.bc_entity_set, [bc_id]).get(bc_id)
    if dataverse_id:
        comparison.dataverse_row = dataverse_client.read_by_ids(mapping.dataverse_entity_set, [dataverse_id]).get(
            dataverse_id
        )
    bc_side, dv_side, to_dv = rules_by_target(mapping, Direction.TO_DATAVERSE)
    _, _, from_dv = rules_by_target(mapping, Direction.FROM_DATAVERSE)
    bc_row, dv_row = comparison.bc_row or {}, comparison.dataverse_row or {}
    lookups_to = LookupResolver(list(to_dv.values()), bc_side, bc_client, dataverse_client)
    lookups_from = LookupResolver(list(from_dv.values()), dv_side, bc_client, dataverse_client)
    if bc_row:
        lookups_to.prepare([bc_row])
    if dv_row:
        lookups_from.prepare([dv_row])
    for fm in compared_field_mappings(mapping):
        is_lookup = fm.lookup_mapping_id is not None
        bc_value = bc_row.get(bc_side.read_field_name(fm.bc_field, is_lookup=is_lookup))
        dv_value = dv_row.get(dv_side.read_field_name(fm.dataverse_field, is_lookup=is_lookup))
        differs = False
        if bc_row and dv_row:
            rule, lookups, source_row, target_row, target = (
                to_dv.get(fm.dataverse_field),
                lookups_to,
                bc_row,
                dv_row,
                dv_side,
            )
            if rule is None:
                rule, lookups, source_row, target_row, target = (
                    from_dv.get(fm.bc_field),
                    lookups_from,
                    dv_row,
                    bc_row,
                    bc_side,
                )
            if rule is not None:
                try:
                    write, desired = desired_value(rule, source_row, lookups, target)
                    differs = write and not values_equal(
                        desired, current_value(rule, target_row, target), target=target
                    )
                except RecordFailure:
                    differs = True
        comparison.fields.append(
            FieldPair(
                fm.pk,
                fm.bc_field,
                fm.dataverse_field,
                bc_value,
                dv_value,
                differs,
                fm.direction == Direction.BIDIRECTIONAL,
            )
        )
    return comparison
