"""Read the services' metadata into TableInfo: Business Central's CSDL `$metadata`, Dataverse's `EntityDefinitions`."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 (our own configured service's metadata, not untrusted input)
from typing import Any

from connectors.types import ColumnInfo, TableInfo

_EDM_TYPES = {
    "Edm.String": "string",
    "Edm.Guid": "guid",
    "Edm.DateTimeOffset": "datetime",
    "Edm.Date": "datetime",
    "Edm.TimeOfDay": "string",
    "Edm.Decimal": "decimal",
    "Edm.Double": "decimal",
    "Edm.Single": "decimal",
    "Edm.Int16": "integer",
    "Edm.Int32": "integer",
    "Edm.Int64": "integer",
    "Edm.Byte": "integer",
    "Edm.Boolean": "boolean",
    "Edm.Binary": "string",
    "Edm.Stream": "string",
}
# Properties Business Central computes; writing them is refused.
BC_READ_ONLY = {"id", "lastModifiedDateTime", "balanceDue", "balance", "taxAreaDisplayName", "systemVersion"}
_XML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _decode_name(name: str) -> str:
    """CSDL encodes characters that are not valid in names, e.g. the blank enum member `_x0020_` is " "."""
    return _XML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def parse_bc_metadata(xml_text: str) -> dict[str, TableInfo]:
    """Map every entity set in a Business Central CSDL document to its TableInfo."""
    root = ET.fromstring(xml_text)  # noqa: S314
    enums: dict[str, dict[Any, str]] = {}
    entity_types: dict[str, ET.Element] = {}
    entity_sets: dict[str, str] = {}
    for schema in root.iter():
        if _local(schema.tag) != "Schema":
            continue
        namespace = schema.get("Namespace", "")
        alias = schema.get("Alias", "")
        for element in schema:
            kind = _local(element.tag)
            name = element.get("Name", "")
            qualified = [f"{namespace}.{name}"] + ([f"{alias}.{name}"] if alias else [])
            if kind == "EnumType":
                members = [_decode_name(m.get("Name", "")) for m in element if _local(m.tag) == "Member"]
                for q in qualified:
                    enums[q] = {m: m for m in members}
            elif kind == "EntityType":
                for q in qualified:
                    entity_types[q] = element
            elif kind == "EntityContainer":
                for entity_set in element:
                    if _local(entity_set.tag) == "EntitySet":
                        entity_sets[entity_set.get("Name", "")] = entity_set.get("EntityType", "")
    tables = {}
    for set_name, type_name in entity_sets.items():
        entity_type = entity_types.get(type_name)
        if entity_type is not None:
            tables[set_name] = _bc_table(set_name, entity_type, enums)
    return tables


def _bc_table(set_name: str, element: ET.Element, enums: dict[str, dict[Any, str]]) -> TableInfo:
    key = "id"
    columns: dict[str, ColumnInfo] = {}
    for child in element:
        kind = _local(child.tag)
        if kind == "Key":
            refs = [r.get("Name", "") for r in child.iter() if _local(r.tag) == "PropertyRef"]
            key = refs[0] if refs else key
        elif kind == "Property":
            name = child.get("Name", "")
            edm_type = child.get("Type", "")
            max_length = child.get("MaxLength")
            computed = any(
                _local(a.tag) == "Annotation"
                and a.get("Term", "").endswith(("Core.V1.Computed", "Core.V1.Permissions"))
                for a in child
            )
            columns[name] = ColumnInfo(
                name=name,
                type="enum" if edm_type in enums else _EDM_TYPES.get(edm_type, "string"),
                max_length=int(max_length) if max_length and max_length.isdigit() else None,
                options=dict(enums.get(edm_type, {})),
                read_only=computed or name in BC_READ_ONLY,
                required=False,
            )
    primary_name = next((n for n in ("displayName", "name", "code", "number") if n in columns), key)
    return TableInfo(
        entity_set=set_name,
        primary_key=key,
        primary_name=primary_name,
        modified_on="lastModifiedDateTime",
        columns=columns,
    )


# -- Dataverse ----------------------------------------------------------------------------------------------------

_DATAVERSE_TYPES = {
    "String": "string",
    "Memo": "memo",
    "Integer": "integer",
    "BigInt": "integer",
    "Decimal": "decimal",
    "Double": "decimal",
    "Money": "money",
    "Boolean": "boolean",
    "DateTime": "datetime",
    "Uniqueidentifier": "guid",
    "Picklist": "choice",
    "State": "choice",
    "Status": "choice",
    "Lookup": "lookup",
    "Customer": "lookup",
    "Owner": "lookup",
    "EntityName": "string",
    "Virtual": "string",
}


def option_label(option: dict[str, Any]) -> str:
    label = option.get("Label")
    if isinstance(label, dict):
        user = label.get("UserLocalizedLabel")
        if isinstance(user, dict) and user.get("Label"):
            return str(user["Label"])
        for localized in label.get("LocalizedLabels") or []:
            if localized.get("Label"):
                return str(localized["Label"])
    if isinstance(label, str):
        return label
    return str(option.get("Value"))


def options_of(attribute: dict[str, Any]) -> dict[Any, str]:
    option_set = attribute.get("OptionSet") or attribute.get("GlobalOptionSet") or {}
    options = option_set.get("Options") if isinstance(option_set, dict) else None
    return {o.get("Value"): option_label(o) for o in options or [] if isinstance(o, dict)}


def dataverse_column(attribute: dict[str, Any], entity_sets_by_logical_name: dict[str, str]) -> ColumnInfo:
    attribute_type = attribute.get("AttributeType") or ""
    required_level = attribute.get("RequiredLevel")
    if isinstance(required_level, dict):
        required_level = required_level.get("Value")
    targets = tuple(entity_sets_by_logical_name.get(t, t) for t in attribute.get("Targets") or [])
    max_length = attribute.get("MaxLength")
    writable = attribute.get("IsValidForCreate", True) or attribute.get("IsValidForUpdate", True)
    return ColumnInfo(
        name=attribute.get("LogicalName", ""),
        type=_DATAVERSE_TYPES.get(attribute_type, "string"),
        max_length=int(max_length) if isinstance(max_length, int) else None,
        options=options_of(attribute),
        read_only=not writable,
        required=required_level in ("ApplicationRequired", "SystemRequired"),
        lookup_targets=targets,
    )
