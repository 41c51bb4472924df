"""Check an export document before importing it: shape, types, references, and the same rules the admin applies.

Every problem is collected (not just the first) so the user can fix the file in one go.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.core.exceptions import FieldDoesNotExist

from mappings.metadata import MetadataCache
from mappings.models import FieldMapping, NewRecordTemplate, TableMapping
from mappings.serialization import FIELD_DEFAULTS, TABLE_DEFAULTS, TEMPLATE_DEFAULTS, normalize_table_dict
from mappings.validation import check_shared_tables, errors, find_cycles, validate_mapping

FORMAT = "syncadmin.mappings"
SUPPORTED_VERSIONS = (1,)
REQUIRED_TABLE_KEYS = ("name", "bc_entity_set", "dataverse_entity_set", "dataverse_primary_key")


# An export of 100 mappings with all their fields is about 1 MB; a file far larger is a mistake, not a configuration,
# and must be answered in seconds (the admin re-posts the file's text to confirm, which Django caps at 2.5 MB).
MAX_IMPORT_BYTES = 2 * 1024 * 1024
# The format nests five levels (document, mappings, mapping, field mappings, a transformation's rules): ten is ample.
MAX_IMPORT_DEPTH = 10


def import_document_parse(text: str | bytes) -> Any:
    """The JSON of an import file, or ImportRefused saying in one line why it cannot be read."""
    import_size_check(len(text.encode("utf-8") if isinstance(text, str) else text))
    try:
        data = json.loads(text)
    except UnicodeDecodeError:
        raise ImportRefused(["The file is not UTF-8 text."]) from None
    except json.JSONDecodeError as exc:
        raise ImportRefused([f"The file is not valid JSON: {exc}."]) from None
    except RecursionError:
        raise ImportRefused([f"The file nests JSON more than {MAX_IMPORT_DEPTH} levels deep."]) from None
    if _depth(data) > MAX_IMPORT_DEPTH:
        raise ImportRefused([f"The file nests JSON more than {MAX_IMPORT_DEPTH} levels deep."])
    return data


def import_size_check(size: int) -> None:
    """Refuse a file larger than MAX_IMPORT_BYTES before reading it, saying how large it is."""
    if size > MAX_IMPORT_BYTES:
        limit = MAX_IMPORT_BYTES // 1024 // 1024
        raise ImportRefused([f"The file is {size / 1024 / 1024:.1f} MB; at most {limit} MB is accepted."])


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_IMPORT_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class ImportRefused(ValueError):
    """The file cannot be imported; `problems` lists every reason. Nothing was changed."""

    def __init__(self, problems: list[str]):
        super().__init__("The file was not imported:\n" + "\n".join(f"- {p}" for p in problems))
        self.problems = problems


def check_import_file(
    data: Any,
    *,
    current: dict[str, dict],
    delete_missing: bool = True,
    metadata: MetadataCache | None = None,
    warnings: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Return the file's mappings normalized, or raise ImportRefused with every problem found.

    Warnings (e.g. a system whose metadata could not be read, so names were not checked) go to `warnings`.
    """
    if not isinstance(data, dict):
        raise ImportRefused(["The file must hold a JSON object with format, version and table_mappings."])
    problems = []
    if data.get("format") != FORMAT:
        problems.append(f'format must be "{FORMAT}", not {data.get("format")!r}.')
    if data.get("version") not in SUPPORTED_VERSIONS:
        versions = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        problems.append(f"version {data.get('version')!r} is not supported (supported: {versions}).")
    items = data.get("table_mappings")
    if not isinstance(items, list):
        problems.append("table_mappings must be a list of table mappings.")
        raise ImportRefused(problems)
    unknown_top = sorted(set(data) - {"format", "version", "exported_at", "table_mappings", "comment"})
    if unknown_top:
        problems.append(f"unknown top-level keys: {', '.join(unknown_top)}.")

    targets = []
    for number, item in enumerate(items, start=1):
        shape_problems = _check_table_shape(number, item)
        problems += shape_problems
        if not shape_problems:
            targets.append(normalize_table_dict(item))
    names = [t["name"] for t in targets]
    duplicates = sorted(name for name, times in Counter(names).items() if times > 1)
    if duplicates:
        problems.append(f"mapping names appear more than once: {', '.join(duplicates)}.")
    if problems:
        raise ImportRefused(problems)

    # References: within the file, plus (when the file only adds/updates) the mappings already there.
    known = set(names) if delete_missing else set(names) | set(current)
    for target in targets:
        for dep in target["dependencies"]:
            if dep not in known:
                problems.append(f"{target['name']}: dependency {dep!r} is not a mapping in the file.")
        for index, field in enumerate(target["field_mappings"], start=1):
            lookup = field["lookup_mapping"]
            if lookup and lookup not in known:
                problems.append(
                    f"{target['name']}: field mapping {index}: lookup mapping {lookup!r} is not in the file."
                )
    graph = {name: set(current[name]["dependencies"]) for name in current} if not delete_missing else {}
    graph.update({t["name"]: set(t["dependencies"]) for t in targets})
    problems += [str(p) for p in find_cycles(graph)]
    if problems:
        raise ImportRefused(problems)

    lookup_tables = {name: current[name]["dataverse_entity_set"] for name in current}
    lookup_tables.update({t["name"]: t["dataverse_entity_set"] for t in targets})
    final = {**({} if delete_missing else current), **{t["name"]: t for t in targets}}
    for target in targets:
        found = validate_mapping(target, metadata=metadata, lookup_tables=lookup_tables)
        found += check_shared_tables(target, [m for name, m in final.items() if name != target["name"]])
        problems += [f"{target['name']}: {p}" for p in errors(found)]
        if warnings is not None:
            warnings += [
                f"{target['name']}: {p}" for p in found if p.warning and f"{target['name']}: {p}" not in warnings
            ]
    if problems:
        raise ImportRefused(problems)
    return targets


def _check_table_shape(number: int, item: Any) -> list[str]:
    if not isinstance(item, dict):
        return [f"table mapping {number} must be an object."]
    where = f"table mapping {number} ({item.get('name', 'no name')})"
    problems = []
    for key in REQUIRED_TABLE_KEYS:
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: {key} is required (text).")
    unknown = sorted(
        set(item) - set(TABLE_DEFAULTS) - {"name", "dependencies", "field_mappings", "new_record_templates"}
    )
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(unknown)}.")
    for key, default in TABLE_DEFAULTS.items():
        if key in item:
            problems += [f"{where}: {p}" for p in _check_value(TableMapping, key, item[key], default)]
    if "name" in item:
        problems += [f"{where}: {p}" for p in _check_value(TableMapping, "name", item["name"], "")]
    deps = item.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        problems.append(f"{where}: dependencies must be a list of mapping names.")
    problems += _check_templates_shape(where, item.get("new_record_templates", []))
    fields = item.get("field_mappings", [])
    if not isinstance(fields, list):
        return [*problems, f"{where}: field_mappings must be a list."]
    for index, field in enumerate(fields, start=1):
        if not isinstance(field, dict):
            problems.append(f"{where}: field mapping {index} must be an object.")
            continue
        unknown = sorted(set(field) - set(FIELD_DEFAULTS))
        if unknown:
            problems.append(f"{where}: field mapping {index}: unknown keys {', '.join(unknown)}.")
        for key, default in FIELD_DEFAULTS.items():
            if key in field and key != "lookup_mapping":
                problems += [
                    f"{where}: field mapping {index}: {p}" for p in _check_value(FieldMapping, key, field[key], default)
                ]
        lookup = field.get("lookup_mapping")
        if lookup is not None and not isinstance(lookup, str):
            problems.append(f"{where}: field mapping {index}: lookup_mapping must be a mapping name or null.")
    return problems


def _check_templates_shape(where: str, templates: Any) -> list[str]:
    if not isinstance(templates, list):
        return [f"{where}: new_record_templates must be a list."]
    problems = []
    for index, template in enumerate(templates, start=1):
        if not isinstance(template, dict):
            problems.append(f"{where}: new record template {index} must be an object.")
            continue
        unknown = sorted(set(template) - set(TEMPLATE_DEFAULTS))
        if unknown:
            problems.append(f"{where}: new record template {index}: unknown keys {', '.join(unknown)}.")
        for key, default in TEMPLATE_DEFAULTS.items():
            if key in template:
                problems += [
                    f"{where}: new record template {index}: {p}"
                    for p in _check_value(NewRecordTemplate, key, template[key], default)
                ]
    return problems


def _check_value(model, key: str, value: Any, default: Any) -> list[str]:
    """Check a value's JSON type against its default's, and text length and choices against the model field."""
    expected = type(default)
    if expected is bool and not isinstance(value, bool):
        return [f"{key} must be true or false, not {value!r}."]
    if expected is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        return [f"{key} must be a whole number of at least 0, not {value!r}."]
    if expected in (dict, list, str) and not isinstance(value, expected):
        kind = {dict: "an object", list: "a list", str: "text"}[expected]
        return [f"{key} must be {kind}, not {value!r}."]
    try:
        model_field = model._meta.get_field(key)
    except FieldDoesNotExist:
        return []
    if isinstance(value, str):
        if model_field.max_length and len(value) > model_field.max_length:
            return [f"{key} is longer than {model_field.max_length} characters."]
        if model_field.choices and value not in {c[0] for c in model_field.choices}:
            allowed = ", ".join(repr(c[0]) for c in model_field.choices)
            return [f"{key} {value!r} is not one of {allowed}."]
    return []
