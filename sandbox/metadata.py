"""Metadata documents generated from sandbox/schema.py: Business Central's CSDL `$metadata`, Dataverse's CSDL
`$metadata` and its `EntityDefinitions` (entities, attributes with types, max lengths and option sets)."""

from __future__ import annotations

import re
import uuid

from sandbox import schema
from sandbox.wire import ApiError, Req, Resp, json_resp

CSDL_HEAD = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">\n<edmx:DataServices>\n'
)
CSDL_TAIL = "</edmx:DataServices>\n</edmx:Edmx>\n"
XML_TYPE = {"Content-Type": "application/xml", "OData-Version": "4.0"}
COMPUTED = '<Annotation Term="Org.OData.Core.V1.Computed" Bool="true"/>'

BC_EDM = {
    "text": "Edm.String",
    "code": "Edm.String",
    "phone": "Edm.String",
    "decimal": "Edm.Decimal",
    "boolean": "Edm.Boolean",
    "guid": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
    "date": "Edm.Date",
}


def _enum_name(table: schema.Table, column: schema.Column) -> str:
    if column.name == "type":
        return "contactType"
    return f"{table.logical_name}{column.name[0].upper()}{column.name[1:]}"


def _member(name: str) -> str:
    return "".join(ch if ch.isalnum() else f"_x{ord(ch):04x}_" for ch in name)


def bc_metadata() -> Resp:
    parts = [CSDL_HEAD, '<Schema Namespace="Microsoft.NAV" xmlns="http://docs.oasis-open.org/odata/ns/edm">\n']
    enums = {}
    for table in schema.BC_TABLES:
        for column in table.columns:
            if column.kind == "enum":
                enums[_enum_name(table, column)] = column.options
    for name, members in enums.items():
        parts.append(f'<EnumType Name="{name}">')
        parts += [f'<Member Name="{_member(m)}" Value="{i}"/>' for i, m in enumerate(members)]
        parts.append("</EnumType>\n")
    parts.append(
        '<EntityType Name="company"><Key><PropertyRef Name="id"/></Key>'
        '<Property Name="id" Type="Edm.Guid" Nullable="false"/><Property Name="systemVersion" Type="Edm.String"/>'
        '<Property Name="name" Type="Edm.String" MaxLength="30"/><Property Name="displayName" Type="Edm.String" '
        'MaxLength="250"/><Property Name="businessProfileId" Type="Edm.String" MaxLength="250"/></EntityType>\n'
    )
    for table in schema.BC_TABLES:
        parts.append(f'<EntityType Name="{table.logical_name}"><Key><PropertyRef Name="id"/></Key>')
        for column in table.columns:
            edm = f"Microsoft.NAV.{_enum_name(table, column)}" if column.kind == "enum" else BC_EDM[column.kind]
            length = f' MaxLength="{column.max_length}"' if column.max_length else ""
            nullable = ' Nullable="false"' if column.name == "id" else ""
            inner = COMPUTED if column.read_only else ""
            parts.append(f'<Property Name="{column.name}" Type="{edm}"{nullable}{length}>{inner}</Property>')
        parts.append("</EntityType>\n")
    parts.append('<EntityContainer Name="NAV">')
    parts.append('<EntitySet Name="companies" EntityType="Microsoft.NAV.company"/>')
    parts += [f'<EntitySet Name="{t.entity_set}" EntityType="{t.entity_type}"/>' for t in schema.BC_TABLES]
    parts.append("</EntityContainer>\n</Schema>\n")
    parts.append(CSDL_TAIL)
    return Resp(200, "".join(parts).encode(), XML_TYPE)


# --- Dataverse ---------------------------------------------------------------------------------------------------

DV_EDM = {
    "string": "Edm.String",
    "memo": "Edm.String",
    "integer": "Edm.Int32",
    "choice": "Edm.Int32",
    "decimal": "Edm.Decimal",
    "money": "Edm.Decimal",
    "boolean": "Edm.Boolean",
    "guid": "Edm.Guid",
    "lookup": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
}
SYSTEM_REQUIRED = {"internalemailaddress", "domainname", "isocurrencycode", "currencyname", "currencysymbol"}
SYSTEM_REQUIRED |= {"currencyprecision", "exchangerate"}


def dataverse(req: Req, path: str) -> Resp:
    if req.method != "GET":
        raise ApiError(405, "0x80060888", "The requested HTTP method is not allowed on this resource.")
    if path == "$metadata":
        return _dataverse_csdl(req.query.get("annotations") == "true")
    return _entity_definitions(req, path)


def _dataverse_csdl(annotations: bool) -> Resp:
    parts = [
        CSDL_HEAD,
        '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">\n',
    ]
    for table in schema.DATAVERSE_TABLES:
        parts.append(f'<EntityType Name="{table.logical_name}"><Key><PropertyRef Name="{table.primary_key}"/></Key>')
        for column in table.columns:
            if column.name == "versionnumber":
                parts.append('<Property Name="versionnumber" Type="Edm.Int64"/>')
                continue
            length = f' MaxLength="{column.max_length}"' if column.max_length else ""
            parts.append(f'<Property Name="{column.api_name}" Type="{DV_EDM[column.kind]}"{length}/>')
        for column in table.columns:
            if column.kind != "lookup":
                continue
            if column.name == "parentcustomerid":
                for suffix in ("account", "contact"):
                    parts.append(f'<NavigationProperty Name="parentcustomerid_{suffix}" Type="mscrm.{suffix}"/>')
                continue
            target = schema.table("dataverse", column.targets[0]).logical_name
            parts.append(f'<NavigationProperty Name="{column.name}" Type="mscrm.{target}"/>')
        parts.append("</EntityType>\n")
    parts.append('<EntityContainer Name="System">')
    for table in schema.DATAVERSE_TABLES:
        if annotations:
            parts.append(
                f'<EntitySet Name="{table.entity_set}" EntityType="{table.entity_type}">'
                '<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
                '<PropertyValue Property="Supported" Bool="true"/></Record></Annotation></EntitySet>'
            )
        else:
            parts.append(f'<EntitySet Name="{table.entity_set}" EntityType="{table.entity_type}"/>')
    parts.append("</EntityContainer>\n</Schema>\n")
    parts.append(CSDL_TAIL)
    return Resp(200, "".join(parts).encode(), XML_TYPE)


def _metadata_id(*names: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, "sandbox:" + ":".join(names)))


def _label(text: str) -> dict:
    localized = {"Label": text, "LanguageCode": 1033, "IsManaged": True, "MetadataId": _metadata_id("label", text)}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def entity_definition(table: schema.Table) -> dict:
    return {
        "@odata.type": "#Microsoft.Dynamics.CRM.EntityMetadata",
        "MetadataId": _metadata_id(table.logical_name),
        "LogicalName": table.logical_name,
        "SchemaName": table.logical_name.capitalize(),
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "PrimaryIdAttribute": table.primary_key,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
        "OwnershipType": "UserOwned" if table.column("_ownerid_value") else "OrganizationOwned",
        "ChangeTrackingEnabled": True,
        "IsCustomEntity": False,
        "DisplayName": _label(table.logical_name.capitalize()),
    }


def _attribute_type(table: schema.Table, column: schema.Column) -> str:
    if column.name == table.primary_key or column.kind == "guid":
        return "Uniqueidentifier"
    if column.name == "statecode":
        return "State"
    if column.name == "statuscode":
        return "Status"
    if column.name == "versionnumber":
        return "BigInt"
    if column.name == "parentcustomeridtype":
        return "EntityName"
    if column.kind == "lookup":
        return {"ownerid": "Owner", "parentcustomerid": "Customer"}.get(column.name, "Lookup")
    return {
        "string": "String",
        "memo": "Memo",
        "integer": "Integer",
        "choice": "Picklist",
        "decimal": "Decimal",
        "money": "Money",
        "boolean": "Boolean",
        "datetime": "DateTime",
    }[column.kind]


CAST_OF = {
    "String": "StringAttributeMetadata",
    "Memo": "MemoAttributeMetadata",
    "Integer": "IntegerAttributeMetadata",
    "BigInt": "BigIntAttributeMetadata",
    "Decimal": "DecimalAttributeMetadata",
    "Money": "MoneyAttributeMetadata",
    "Boolean": "BooleanAttributeMetadata",
    "DateTime": "DateTimeAttributeMetadata",
    "Uniqueidentifier": "UniqueIdentifierAttributeMetadata",
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
    "Lookup": "LookupAttributeMetadata",
    "Owner": "LookupAttributeMetadata",
    "Customer": "LookupAttributeMetadata",
    "EntityName": "EntityNameAttributeMetadata",
}


def attribute_definition(table: schema.Table, column: schema.Column, *, with_options: bool = False) -> dict:
    attribute_type = _attribute_type(table, column)
    if column.name == table.primary_key or column.name in SYSTEM_REQUIRED:
        level = "SystemRequired"
    elif column.required:
        level = "ApplicationRequired"
    else:
        level = "None"
    system = column.name in ("createdon", "modifiedon", "versionnumber", "createdby", "modifiedby")
    computed = column.read_only
    definition = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{CAST_OF[attribute_type]}",
        "MetadataId": _metadata_id(table.logical_name, column.name),
        "LogicalName": column.name,
        "SchemaName": column.name,
        "EntityLogicalName": table.logical_name,
        "AttributeType": attribute_type,
        "AttributeTypeName": {"Value": f"{attribute_type}Type"},
        "AttributeOf": "parentcustomerid" if column.name == "parentcustomeridtype" else None,
        "IsPrimaryId": column.name == table.primary_key,
        "IsPrimaryName": column.name == table.primary_name,
        "IsValidForCreate": not computed and not system and not column.not_for_create,
        "IsValidForUpdate": not computed and not system and column.name != table.primary_key,
        "IsValidForRead": True,
        "IsCustomAttribute": False,
        "RequiredLevel": {"Value": level, "CanBeChanged": level != "SystemRequired"},
        "DisplayName": _label(column.label or column.name),
    }
    if column.max_length and attribute_type in ("String", "Memo"):
        definition["MaxLength"] = column.max_length
        definition["Format"] = "Text" if attribute_type == "String" else "TextArea"
    if attribute_type in ("Integer", "Decimal", "Money"):
        definition["MinValue"] = column.minimum if column.minimum is not None else -2147483648
        definition["MaxValue"] = column.maximum if column.maximum is not None else 2147483647
        if attribute_type == "Money":
            definition["Precision"] = 2
    if column.kind == "lookup":
        definition["Targets"] = [schema.table("dataverse", t).logical_name for t in column.targets]
    if with_options and column.kind == "choice":
        definition["OptionSet"] = {
            "MetadataId": _metadata_id(table.logical_name, column.name, "optionset"),
            "Name": f"{table.logical_name}_{column.name}",
            "OptionSetType": attribute_type,
            "Options": [{"Value": value, "Label": _label(text)} for value, text in column.options],
        }
    return definition


def _select(items: list[dict], text: str | None) -> list[dict]:
    if not text:
        return items
    names = [n.strip() for n in text.split(",") if n.strip()]
    keep = {"@odata.type", "MetadataId", "OptionSet", *names}
    return [{k: v for k, v in item.items() if k in keep} for item in items]


def _filter(items: list[dict], text: str | None) -> list[dict]:
    """The few metadata filters clients use: `Name eq 'x'`, `Name eq true|false`, joined with `and`."""
    if not text:
        return items
    result = items
    for clause in re.split(r"\s+and\s+", text.strip()):
        m = re.fullmatch(r"(\w+)\s+eq\s+('(?:[^']|'')*'|true|false|\d+)", clause.strip())
        if not m:
            raise ApiError(400, "0x80060888", f"The metadata filter '{text}' is not supported by this emulator.")
        name, raw = m.groups()
        value = {"true": True, "false": False}.get(raw, raw[1:-1].replace("''", "'") if raw.startswith("'") else None)
        if value is None:
            value = int(raw)
        result = [i for i in result if i.get(name) == value]
    return result


ENTITY_KEY = re.compile(r"^EntityDefinitions(?:\((?P<key>[^)]*)\))?(?:/(?P<rest>.*))?$")


def _definition_table(key: str) -> schema.Table:
    m = re.fullmatch(r"LogicalName='(\w+)'", key.strip())
    table = schema.DATAVERSE_BY_LOGICAL.get(m.group(1)) if m else None
    if table is None:
        for t in schema.DATAVERSE_TABLES:
            if key.strip().lower() == _metadata_id(t.logical_name):
                table = t
    if table is None:
        raise ApiError(404, "0x80040217", f"Could not find an entity with key {key}.")
    return table


def _expand_options(req: Req) -> bool:
    return "OptionSet" in (req.query.get("$expand") or "")


def _entity_definitions(req: Req, path: str) -> Resp:
    m = ENTITY_KEY.match(path)
    if not m:
        raise ApiError(404, "0x80060888", f"Resource not found for the segment '{path}'.")
    context = f"{req.base_url}$metadata#EntityDefinitions"
    key, rest = m.group("key"), m.group("rest")
    if key is None:
        items = [entity_definition(t) for t in schema.DATAVERSE_TABLES]
        items = _select(_filter(items, req.query.get("$filter")), req.query.get("$select"))
        return json_resp(200, {"@odata.context": context, "value": items})
    table = _definition_table(key)
    if rest is None:
        body = entity_definition(table)
        if "Attributes" in (req.query.get("$expand") or ""):
            body["Attributes"] = [attribute_definition(table, c) for c in table.columns]
        [body] = _select([body], req.query.get("$select")) if req.query.get("$select") else [body]
        return json_resp(200, {"@odata.context": f"{context}/$entity", **body})
    am = re.fullmatch(r"Attributes(?:\((?P<akey>[^)]*)\))?(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?", rest)
    if not am:
        raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
    attributes = [attribute_definition(table, c, with_options=_expand_options(req)) for c in table.columns]
    if am.group("cast"):
        attributes = [a for a in attributes if a["@odata.type"] == f"#Microsoft.Dynamics.CRM.{am.group('cast')}"]
    if am.group("akey"):
        wanted = re.fullmatch(r"LogicalName='(\w+)'", am.group("akey"))
        found = [a for a in attributes if wanted and a["LogicalName"] == wanted.group(1)]
        if not found:
            raise ApiError(404, "0x80040217", f"Could not find an attribute with key {am.group('akey')}.")
        [item] = _select(found, req.query.get("$select"))
        return json_resp(200, {"@odata.context": f"{context}/Attributes/$entity", **item})
    attributes = _select(_filter(attributes, req.query.get("$filter")), req.query.get("$select"))
    return json_resp(200, {"@odata.context": f"{context}({table.logical_name})/Attributes", "value": attributes})
