"""One plain-data form of a table mapping with its field mappings, shared by the defaults, reset, export and import.

A mapping as a dict (the export file's `table_mappings` items, documented in mappings/EXPORT_FORMAT.md):
the table mapping's configuration fields, `dependencies` as a sorted list of mapping names, and `field_mappings`
as a list of dicts in position order, each naming its `lookup_mapping` by mapping name. Runtime state (watermarks,
timestamps, ids) is not configuration and is left out, so a diff or an import never touches it.
"""

from __future__ import annotations

import copy
from typing import Any

from mappings.models import FieldMapping, NewRecordTemplate, TableMapping

# Table mapping configuration fields with their defaults when a dict leaves them out.
TABLE_DEFAULTS: dict[str, Any] = {
    "bc_entity_set": "",
    "dataverse_entity_set": "",
    "dataverse_primary_key": "",
    "bc_name_field": "displayName",
    "dataverse_name_field": "name",
    "direction": "bidirectional",
    "table_filter": "",
    "integration_table_filter": "",
    "record_priority": 0,
    "sync_only_coupled": True,
    "update_conflict_resolution": "",
    "deletion_conflict_resolution": "",
    "deletions_to_dataverse": "",
    "deletions_from_dataverse": "",
    "deletion_safety_percent": 5,
    "bc_new_record_values": {},
    "dataverse_new_record_values": {},
    "skip_after_failures": {},
    "sync_after_match_coupling": False,
    "create_new_if_no_match": False,
    "dataverse_company_field": "",
    "multi_company": False,
    "is_default": False,
}

FIELD_DEFAULTS: dict[str, Any] = {
    "bc_field": "",
    "dataverse_field": "",
    "direction": "bidirectional",
    "constant_value": "",
    "enabled": True,
    "transformation": [],
    "value_map": {},
    "lookup_mapping": None,
    "clear_value_on_failed_lookup": False,
    "add_missing_options": False,
    "bc_code_table": "",
    "not_null": False,
    "update_conflict_resolution": "",
    "use_for_matching": False,
    "case_sensitive_matching": False,
    "match_priority": 0,
}

# Values for new records chosen by a filter on the source record, in order (the first match applies).
TEMPLATE_DEFAULTS: dict[str, Any] = {"name": "", "target": "dataverse", "source_filter": "", "values": {}}

TABLE_KEYS = ("name", *TABLE_DEFAULTS, "dependencies", "field_mappings", "new_record_templates")
FIELD_KEYS = tuple(FIELD_DEFAULTS)


def template_to_dict(template: NewRecordTemplate) -> dict[str, Any]:
    return {key: getattr(template, key) for key in TEMPLATE_DEFAULTS}


def field_mapping_to_dict(field_mapping: FieldMapping) -> dict[str, Any]:
    data = {key: getattr(field_mapping, key) for key in FIELD_DEFAULTS if key != "lookup_mapping"}
    data["lookup_mapping"] = field_mapping.lookup_mapping.name if field_mapping.lookup_mapping else None
    return {key: data[key] for key in FIELD_KEYS}


def table_mapping_to_dict(table_mapping: TableMapping) -> dict[str, Any]:
    """Return the mapping's configuration as plain data (see the module docstring)."""
    data: dict[str, Any] = {"name": table_mapping.name}
    data.update({key: getattr(table_mapping, key) for key in TABLE_DEFAULTS})
    data["dependencies"] = sorted(table_mapping.dependencies.values_list("name", flat=True))
    field_mappings = table_mapping.field_mappings.select_related("lookup_mapping").order_by("position", "id")
    data["field_mappings"] = [field_mapping_to_dict(fm) for fm in field_mappings]
    templates = table_mapping.new_record_templates.order_by("target", "position", "id")
    data["new_record_templates"] = [template_to_dict(t) for t in templates]
    return data


def normalize_table_dict(data: dict[str, Any]) -> dict[str, Any]:
    """Fill left-out keys with their defaults, so two dicts compare by meaning.

    Field mappings keep their list order; `position` is not part of the data but follows from that order.
    """
    normalized = {"name": data["name"]}
    normalized.update({key: data.get(key, default) for key, default in TABLE_DEFAULTS.items()})
    normalized["dependencies"] = sorted(data.get("dependencies", []))
    normalized["field_mappings"] = [
        {key: field.get(key, default) for key, default in FIELD_DEFAULTS.items()}
        for field in data.get("field_mappings", [])
    ]
    normalized["new_record_templates"] = [
        {key: template.get(key, default) for key, default in TEMPLATE_DEFAULTS.items()}
        for template in data.get("new_record_templates", [])
    ]
    return normalized


def save_table_dicts(
    items: list[dict[str, Any]],
    *,
    table_model: type[TableMapping] = TableMapping,
    field_model: type[FieldMapping] = FieldMapping,
    company=None,
    template_model: type[NewRecordTemplate] | None = NewRecordTemplate,
) -> list:
    """Create or update, by name within `company`, the table mappings described by `items`, with their dependencies
    and fields (names are unique per company; dependencies and lookups stay within it).

    An existing row is updated in place (couplings point at it, so it is never deleted and recreated); its field
    mappings are replaced by the ones given. Dependencies and lookups name other mappings, which must exist in the
    database or among `items`. The model arguments let the data migration pass its historical models; keys the
    model does not have (yet) are left out; a data migration's
    historical models leave the templates alone.
    """
    if table_model is not TableMapping:
        template_model = None  # historical models (a data migration): its table may not exist yet
    table_columns = {f.name for f in table_model._meta.concrete_fields}
    field_columns = {f.name for f in field_model._meta.concrete_fields}
    # A historical model (the data migration creating the defaults) may predate companies.
    scope = {"company": company} if "company" in table_columns else {}
    rows = []
    for data in items:
        # Deep copies: the JSON values must not share objects with the caller's data (e.g. the defaults' spec).
        data = copy.deepcopy(data)
        values = {k: v for k, v in data.items() if k in TABLE_DEFAULTS and k in table_columns}
        row = table_model.objects.filter(name=data["name"], **scope).first()
        if row is None:
            row = table_model(name=data["name"], **scope)
        for key, value in values.items():
            setattr(row, key, value)
        row.save()
        rows.append(row)
    by_name = {row.name: row for row in table_model.objects.filter(**scope)}
    for row, data in zip(rows, items, strict=True):
        row.dependencies.set([by_name[name] for name in data.get("dependencies", [])])
        row.field_mappings.all().delete()
        new_fields = []
        for position, field in enumerate(data.get("field_mappings", []), start=1):
            values = {k: v for k, v in field.items() if k in FIELD_DEFAULTS and k in field_columns}
            lookup_name = field.get("lookup_mapping")
            values["lookup_mapping"] = by_name[lookup_name] if lookup_name else None
            new_fields.append(field_model(table_mapping=row, position=position * 10, **values))
        field_model.objects.bulk_create(new_fields)
        if template_model is not None:
            template_model.objects.filter(table_mapping=row).delete()
            template_model.objects.bulk_create(
                template_model(
                    table_mapping=row,
                    position=position * 10,
                    **{k: copy.deepcopy(v) for k, v in template.items() if k in TEMPLATE_DEFAULTS},
                )
                for position, template in enumerate(data.get("new_record_templates", []), start=1)
            )
    return rows
