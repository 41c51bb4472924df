"""Option mappings that grow, as Business Central's option mappings do for payment terms, shipment methods and
shipping agents: a Business Central value the field mapping's value map lacks becomes a new option of the Dataverse
choice column (the InsertOptionValue action), labelled with the value, and an entry of the value map, before the
page is planned. Only field mappings with `add_missing_options` do this; the others report the missing entry.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from connectors.odata import string_literal
from connectors.types import ConnectorError, ErrorKind, WriteOperation
from jobs.engine.sides import Row, Side
from jobs.engine.values import FieldRule, is_blank
from mappings.models import FieldMapping
from mappings.transformations import apply_transformation


class OptionAppender:
    """Appends the options or codes a page needs, once per value, and keeps the value maps in step."""

    def __init__(self, rules: list[FieldRule], source: Side, target: Side, source_client: Any, target_client: Any):
        self.rules = [rule for rule in rules if rule.add_missing_options and rule.source_field]
        self.source, self.target = source, target
        self.source_client, self.client = source_client, target_client
        self.appended: list[tuple[str, str, Any]] = []  # (field, label, new value or code), for the run's log

    def prepare(self, rows: list[Row]) -> None:
        """Append an option or code for every value of the page the value maps lack. Raises ConnectorError."""
        for rule in self.rules:
            missing = sorted({key for row in rows if (key := _map_key(rule, row)) and key not in rule.value_map})
            for key in missing:
                if self.target.is_dataverse:
                    value = self.client.insert_option_value(self.target.entity_set, rule.target_field, key)
                    _remember(rule, bc_value=key, dataverse_value=value, from_dataverse=False)
                    self.appended.append((rule.target_field, key, value))
                else:
                    code = self._code_for(rule, key)
                    _remember(rule, bc_value=code, dataverse_value=int(key), from_dataverse=True)
                    self.appended.append((rule.target_field, key, code))

    def _code_for(self, rule: FieldRule, option: str) -> str:
        """The Business Central code of a Dataverse option: the code table's record named like the option's label,
        created when there is none (code: the label upper-cased, cut to the code field's length)."""
        column = self.source_client.table_info(self.source.entity_set).columns.get(rule.source_field or "")
        label = str((column.options if column else {}).get(int(option), option))
        codes = self.client.table_info(rule.code_table)
        length = codes.columns["code"].max_length or 10
        code = re.sub(r"[^A-Z0-9 .\-]", "", label.upper()).strip()[:length] or option[-length:]
        for page in self.client.read_pages(rule.code_table, filter=f"code eq {string_literal(code)}", select=["code"]):
            if page.rows:
                return str(page.rows[0]["code"])
        name = next((n for n in ("displayName", "description", "name") if n in codes.columns), None)
        values = {"code": code, **({name: label[: codes.columns[name].max_length or 50]} if name else {})}
        [result] = self.client.write_many([WriteOperation("create", rule.code_table, "code", values)])
        if not result.ok:
            raise result.error or ConnectorError(ErrorKind.VALIDATION, f"The code {code} could not be created.")
        return code


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


def _remember(rule: FieldRule, *, bc_value: str, dataverse_value: int, from_dataverse: bool) -> None:
    """Add the entry to the run's rule (keyed by its source value) and to the field mapping's stored value map
    (always Business Central value -> Dataverse value)."""
    if from_dataverse:
        rule.value_map[str(dataverse_value)] = bc_value
    else:
        rule.value_map[bc_value] = dataverse_value
    if rule.field_mapping_id is None:
        return  # a rule not built from a stored field mapping: nothing to keep
    with transaction.atomic():
        field_mapping = FieldMapping.objects.select_for_update().get(pk=rule.field_mapping_id)
        # An UPDATE, not save(): saving a field mapping marks the mapping changed (a person's edit), which un-skips
        # every skipped record of it; an entry the run appended itself is no such change.
        FieldMapping.objects.filter(pk=field_mapping.pk).update(
            value_map={**(field_mapping.value_map or {}), bc_value: dataverse_value}
        )
