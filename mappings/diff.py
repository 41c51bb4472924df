"""What would change between the configuration in the database and a target (the defaults, or an import file)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Literal

from mappings.serialization import FIELD_DEFAULTS, TABLE_DEFAULTS, normalize_table_dict
from mappings.validation import field_label

Action = Literal["create", "update", "delete", "unchanged"]


@dataclasses.dataclass
class MappingDiff:
    """The difference for one table mapping, as readable lines."""

    name: str
    action: Action
    changes: list[str] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "changes": self.changes}

    def __str__(self):
        head = f"{self.name}: {self.action}"
        return "\n".join([head, *(f"  {line}" for line in self.changes)])


def mapping_diff(current: dict[str, Any] | None, target: dict[str, Any] | None) -> MappingDiff:
    """Compare two mappings in plain-data form; None means the mapping does not exist on that side."""
    if current is None:
        if target is None:
            raise ValueError("Nothing to compare.")
        target = normalize_table_dict(target)
        return MappingDiff(target["name"], "create", _describe_new(target))
    if target is None:
        return MappingDiff(current["name"], "delete", [f"delete {current['name']} and its field mappings"])
    current, target = normalize_table_dict(current), normalize_table_dict(target)
    changes = []
    for key in (*TABLE_DEFAULTS, "dependencies"):
        if current[key] != target[key]:
            changes.append(f"{key}: {_show(current[key])} -> {_show(target[key])}")
    changes += _field_changes(current["field_mappings"], target["field_mappings"])
    if current["new_record_templates"] != target["new_record_templates"]:
        changes.append(
            f"new_record_templates: {_show(current['new_record_templates'])} -> {_show(target['new_record_templates'])}"
        )
    return MappingDiff(target["name"], "update" if changes else "unchanged", changes)


def _describe_new(target: dict[str, Any]) -> list[str]:
    lines = [
        f"{target['bc_entity_set']} <-> {target['dataverse_entity_set']}, {target['direction']}",
        f"{len(target['field_mappings'])} field mappings",
    ]
    if target["dependencies"]:
        lines.append(f"depends on {', '.join(target['dependencies'])}")
    return lines


def _key(field: dict[str, Any]) -> tuple[str, str, str]:
    return (field["bc_field"], field["dataverse_field"], field["direction"])


def _keyed(fields: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Key each field mapping by its sides and direction, numbering repeats so every key is unique."""
    seen: Counter = Counter()
    keyed = {}
    for field in fields:
        key = _key(field)
        seen[key] += 1
        keyed[(*key, seen[key])] = field
    return keyed


def _field_changes(current: list[dict[str, Any]], target: list[dict[str, Any]]) -> list[str]:
    old, new = _keyed(current), _keyed(target)
    changes = []
    for key, field in old.items():
        if key not in new:
            changes.append(f"remove {_label(current, field)}")
    for key, field in new.items():
        if key not in old:
            changes.append(f"add {_label(target, field)}")
            continue
        differences = [
            f"{name} {_show(old[key][name])} -> {_show(field[name])}"
            for name in FIELD_DEFAULTS
            if old[key][name] != field[name]
        ]
        if differences:
            changes.append(f"change {_label(target, field)}: {'; '.join(differences)}")
    common_old = [k for k in old if k in new]
    common_new = [k for k in new if k in old]
    if common_old != common_new:
        changes.append("change the order of the field mappings")
    return changes


def _label(fields: list[dict[str, Any]], field: dict[str, Any]) -> str:
    return field_label(fields.index(field) + 1, field).replace("Field mapping", "field mapping")


def _show(value: Any) -> str:
    if value == "" or value is None:
        return "(blank)"
    return repr(value) if isinstance(value, str) else str(value)
