"""Option mappings that grow, as Business Central's option mappings do for payment terms, shipment methods and
shipping agents: a Business Central value the field mapping's value map lacks becomes a new option of the Dataverse
choice column (the InsertOptionValue action), labelled with the value, and an entry of the value map, before the
page is planned. Only field mappings with `add_missing_options` do this; the others report the missing entry.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from jobs.engine.sides import Row, Side
from jobs.engine.values import FieldRule, is_blank
from mappings.models import FieldMapping
from mappings.transformations import apply_transformation


class OptionAppender:
    """Appends the options a page needs, once per value, and keeps the value maps in step."""

    def __init__(self, rules: list[FieldRule], target: Side, target_client: Any) -> None:
        self.rules = [rule for rule in rules if rule.add_missing_options and rule.source_field]
        self.target, self.client = target, target_client
        self.appended: list[tuple[str, str, int]] = []  # (column, label, new value), for the run's log

    def prepare(self, rows: list[Row]) -> None:
        """Append an option for every value of the page the value maps lack. Raises ConnectorError."""
        for rule in self.rules:
            missing = sorted({key for row in rows if (key := _map_key(rule, row)) and key not in rule.value_map})
            for label in missing:
                value = self.client.insert_option_value(self.target.entity_set, rule.target_field, label)
                _remember(rule, label, value)
                self.appended.append((rule.target_field, label, value))


def _map_key(rule: FieldRule, row: Row) -> str | None:
    """The value map key of a source value, as values.desired_value looks it up (after the transformation)."""
    value = row.get(rule.source_field or "")
    if rule.transformation and isinstance(value, str):
        try:
            value = apply_transformation(rule.transformation, value)
        except ValueError:
            return None  # the planner reports the failed transformation
    if is_blank(value):
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _remember(rule: FieldRule, key: str, value: int) -> None:
    """Add the entry to the run's rule and to the field mapping's stored value map (Business Central -> Dataverse)."""
    rule.value_map[key] = value
    if rule.field_mapping_id is None:
        return  # a rule not built from a stored field mapping: nothing to keep
    with transaction.atomic():
        field_mapping = FieldMapping.objects.select_for_update().get(pk=rule.field_mapping_id)
        field_mapping.value_map = {**(field_mapping.value_map or {}), key: value}
        field_mapping.save(update_fields=["value_map"])
