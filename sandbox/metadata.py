"""Metadata documents generated from sandbox/schema.py: Business Central's CSDL `$metadata`, Dataverse's CSDL
`$metadata` and its `EntityDefinitions` (entities, attributes with types, max lengths and option sets)."""

from __future__ import annotations

import re
import uuid

from sandbox import option_sets, schema
from sandbox.wire import ApiError, Req, Resp, json_resp

CSDL_HEAD = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">\n<edmx:DataServices>\n'
)
CSDL_TAIL = "</edmx:DataServices>\n</edmx:Edmx>\n"
XML_TYPE = {"Content-Type": "application/xml", "OData-Version": "4.0"}
CUSTOM_PREFIX = "cr123_"  # the publisher prefix of the emulated solution's custom tables and columns
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
    if column.name == "type" and table.logical_name in ("customer", "contact"):
        return "contactType"  # the enum customers and contacts share, as Business Central declares it
    return f"{table.logical_name}{column.name[0].upper()}{column.name[1:]}"


def _member(name: str) -> str:
    return "".join(ch if ch.isalnum() else f"_x{ord(ch):04x}_" for ch in name)


def bc_metadata(route: str = schema.BC_STANDARD_ROUTE) -> Resp:
    """The CSDL of one API route: `v2.0` (the standard API) or an extension's `{publisher}/{group}/{version}`."""
    tables = [t for t in schema.BC_TABLES if t.api_route == route]
    parts = [CSDL_HEAD, '<Schema Namespace="Microsoft.NAV" xmlns="http://docs.oasis-open.org/odata/ns/edm">\n']
    enums = {}
    for table in tables:
        for column in table.columns:
            if column.kind == "enum":
                enums[_enum_name(table, column)] = column.options
    for name, members in enums.items():
        parts.append(f'<EnumType Name="{name}">')
        parts += [f'<Member Name="{_member(m)}" Value="{i}"/>' for i, m in enumerate(members)]
        parts.append("</EnumType>\n")
    # Every company-scoped entity set is contained in its company: a navigation property of `company`, with the
    # container's binding, as Business Central declares `companies(<id>)/customers`.
    navigation = "".join(
        f'<NavigationProperty Name="{t.entity_set}" Type="Collection({t.entity_type})" ContainsTarget="true"/>'
        for t in tables
    )
    parts.append(
        '<EntityType Name="company"><Key><PropertyRef Name="id"/></Key>'
        '<Property Name="id" Type="Edm.Guid" Nullable="false"/><Property Name="systemVersion" Type="Edm.String"/>'
        '<Property Name="name" Type="Edm.String" MaxLength="30"/><Property Name="displayName" Type="Edm.String" '
        f'MaxLength="250"/><Property Name="businessProfileId" Type="Edm.String" MaxLength="250"/>{navigation}'
        "</EntityType>\n"
    )
    for table in tables:
        parts.append(f'<EntityType Name="{table.logical_name}"><Key><PropertyRef Name="id"/></Key>')
        for column in table.columns:
            edm = f"Microsoft.NAV.{_enum_name(table, column)}" if column.kind == "enum" else BC_EDM[column.kind]
            length = f' MaxLength="{column.max_length}"' if column.max_length else ""
            nullable = ' Nullable="false"' if column.name == "id" else ""
            inner = COMPUTED if column.read_only else ""
            parts.append(f'<Property Name="{column.name}" Type="{edm}"{nullable}{length}>{inner}</Property>')
        parts.append("</EntityType>\n")
    parts.append('<EntityContainer Name="NAV">')
    bindings = "".join(f'<NavigationPropertyBinding Path="{t.entity_set}" Target="{t.entity_set}"/>' for t in tables)
    parts.append(f'<EntitySet Name="companies" EntityType="Microsoft.NAV.company">{bindings}</EntitySet>')
    parts += [f'<EntitySet Name="{t.entity_set}" EntityType="{t.entity_type}"/>' for t in tables]
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


# The actions and functions the emulator answers, declared as Dataverse declares them in `$metadata`: the *Multiple
# actions are bound to a collection of `crmbaseentity` (called as `accounts/Microsoft.Dynamics.CRM.UpsertMultiple`),
# WhoAmI is an unbound function and InsertOptionValue an unbound action, both reached through their imports.
DATAVERSE_OPERATIONS = (
    '<EntityType Name="crmbaseentity" Abstract="true"/>\n'
    '<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid" Nullable="false"/>'
    '<Property Name="UserId" Type="Edm.Guid" Nullable="false"/>'
    '<Property Name="OrganizationId" Type="Edm.Guid" Nullable="false"/></ComplexType>\n'
    '<ComplexType Name="CreateMultipleResponse"><Property Name="Ids" Type="Collection(Edm.Guid)" Nullable="false"/>'
    "</ComplexType>\n"
    '<ComplexType Name="UpsertMultipleResponse"><Property Name="Ids" Type="Collection(Edm.Guid)" Nullable="false"/>'
    "</ComplexType>\n"
    '<ComplexType Name="InsertOptionValueResponse"><Property Name="NewOptionValue" Type="Edm.Int32" '
    'Nullable="false"/></ComplexType>\n'
    '<ComplexType Name="Label"/>\n'
    '<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/></Function>\n'
    '<Action Name="CreateMultiple" IsBound="true">'
    '<Parameter Name="entityset" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>'
    '<Parameter Name="Targets" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>'
    '<ReturnType Type="mscrm.CreateMultipleResponse" Nullable="false"/></Action>\n'
    '<Action Name="UpdateMultiple" IsBound="true">'
    '<Parameter Name="entityset" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>'
    '<Parameter Name="Targets" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/></Action>\n'
    '<Action Name="UpsertMultiple" IsBound="true">'
    '<Parameter Name="entityset" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>'
    '<Parameter Name="Targets" Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>'
    '<ReturnType Type="mscrm.UpsertMultipleResponse" Nullable="false"/></Action>\n'
    '<Action Name="InsertOptionValue">'
    '<Parameter Name="OptionSetName" Type="Edm.String" Unicode="false"/>'
    '<Parameter Name="EntityLogicalName" Type="Edm.String" Unicode="false"/>'
    '<Parameter Name="AttributeLogicalName" Type="Edm.String" Unicode="false"/>'
    '<Parameter Name="Value" Type="Edm.Int32"/>'
    '<Parameter Name="Label" Type="mscrm.Label" Nullable="false"/>'
    '<Parameter Name="Description" Type="mscrm.Label"/>'
    '<Parameter Name="SolutionUniqueName" Type="Edm.String" Unicode="false"/>'
    '<ReturnType Type="mscrm.InsertOptionValueResponse" Nullable="false"/></Action>\n'
)
DATAVERSE_OPERATION_IMPORTS = (
    '<FunctionImport Name="WhoAmI" Function="mscrm.WhoAmI"/>'
    '<ActionImport Name="InsertOptionValue" Action="mscrm.InsertOptionValue"/>'
)


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
    parts.append(DATAVERSE_OPERATIONS)
    parts.append('<EntityContainer Name="System">')
    parts.append(DATAVERSE_OPERATION_IMPORTS)
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
        "IsCustomEntity": table.logical_name.startswith(CUSTOM_PREFIX),
        "IsManaged": not table.logical_name.startswith(CUSTOM_PREFIX),
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
        "IsCustomAttribute": column.name.startswith(CUSTOM_PREFIX),
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
            "Options": [
                {"Value": value, "Label": _label(text)} for value, text in option_sets.options(table, column).items()
            ],
        }
    return definition


# The properties each metadata type has, as Dataverse's CSDL declares them: `$select` of anything else is refused with
# a 400, as the service does (a property of a derived type needs the cast, e.g. MaxLength needs
# `/Microsoft.Dynamics.CRM.StringAttributeMetadata`). Properties we do not emulate come back as null.
ENTITY_PROPERTIES = {
    "MetadataId", "HasChanged", "LogicalName", "SchemaName", "EntitySetName", "LogicalCollectionName",
    "CollectionSchemaName", "PrimaryIdAttribute", "PrimaryNameAttribute", "PrimaryImageAttribute", "ObjectTypeCode",
    "OwnershipType", "ChangeTrackingEnabled", "IsCustomEntity", "IsManaged", "IsActivity", "IsIntersect",
    "IsValidForAdvancedFind", "IsAuditEnabled", "HasNotes", "HasActivities", "IsCustomizable", "IsValidForQueue",
    "DisplayName", "DisplayCollectionName", "Description", "IntroducedVersion", "TableType", "IsPrivate",
    "IsLogicalEntity", "ExternalName", "ExternalCollectionName", "EntityColor", "IconVectorName",
}  # fmt: skip
ENTITY_NAVIGATION = {"Attributes", "Keys", "ManyToOneRelationships", "OneToManyRelationships",
                     "ManyToManyRelationships", "Privileges"}  # fmt: skip
ATTRIBUTE_PROPERTIES = {
    "MetadataId", "HasChanged", "LogicalName", "SchemaName", "EntityLogicalName", "AttributeType",
    "AttributeTypeName", "AttributeOf", "IsPrimaryId", "IsPrimaryName", "IsValidForCreate", "IsValidForUpdate",
    "IsValidForRead", "IsCustomAttribute", "IsManaged", "IsLogical", "IsSecured", "IsFilterable", "IsSearchable",
    "IsRetrievable", "IsAuditEnabled", "IsValidForAdvancedFind", "IsCustomizable", "IsRequiredForForm",
    "RequiredLevel", "DisplayName", "Description", "ColumnNumber", "SourceType", "IntroducedVersion", "ExternalName",
}  # fmt: skip
ATTRIBUTE_CAST_PROPERTIES = {
    "StringAttributeMetadata": {"MaxLength", "Format", "FormatName", "DatabaseLength", "IsLocalizable"},
    "MemoAttributeMetadata": {"MaxLength", "Format", "FormatName", "DatabaseLength", "IsLocalizable"},
    "IntegerAttributeMetadata": {"MinValue", "MaxValue", "Format"},
    "BigIntAttributeMetadata": {"MinValue", "MaxValue"},
    "DecimalAttributeMetadata": {"MinValue", "MaxValue", "Precision", "ImeMode"},
    "MoneyAttributeMetadata": {"MinValue", "MaxValue", "Precision", "PrecisionSource", "IsBaseCurrency"},
    "DateTimeAttributeMetadata": {"Format", "DateTimeBehavior", "ImeMode"},
    "LookupAttributeMetadata": {"Targets", "Format"},
    "PicklistAttributeMetadata": {"OptionSet", "GlobalOptionSet", "DefaultFormValue"},
    "StateAttributeMetadata": {"OptionSet", "DefaultFormValue"},
    "StatusAttributeMetadata": {"OptionSet", "DefaultFormValue"},
    "BooleanAttributeMetadata": {"OptionSet", "DefaultValue"},
}
KEY_PROPERTIES = {"MetadataId", "HasChanged", "LogicalName", "SchemaName", "EntityLogicalName", "KeyAttributes",
                  "DisplayName", "IsManaged", "EntityKeyIndexStatus", "IsCustomizable"}  # fmt: skip


def _unknown_property(name: str, type_name: str) -> ApiError:
    return ApiError(
        400, "0x80060888", f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
    )


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in _split_top(text or "") if n.strip()]


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses: `Attributes($select=A,B),Keys` is two items."""
    parts, depth, current = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _select(items: list[dict], text: str | None, allowed: set[str], type_name: str, keep=()) -> list[dict]:
    """`$select`: refuse names the type does not have; keep what was asked (null if not emulated)."""
    names = _names(text)
    for name in names:
        if name not in allowed and name not in keep:
            raise _unknown_property(name, type_name)
    if not names:
        return items
    kept = {"@odata.type", "MetadataId", *keep}
    return [{**{n: item.get(n) for n in names if n not in keep}, **{k: v for k, v in item.items() if k in kept}}
            for item in items]  # fmt: skip


def _expansions(text: str | None, allowed: set[str], type_name: str) -> dict[str, dict[str, str]]:
    """`$expand=A($select=x,y;$filter=...),B` -> {"A": {"$select": "x,y", ...}, "B": {}}; unknown names refused."""
    result = {}
    for item in _names(text):
        m = re.fullmatch(r"(\w+)(?:\((.*)\))?", item, re.S)
        if not m:
            raise ApiError(400, "0x80060888", f"The query parameter $expand '{text}' is not valid.")
        name, options = m.group(1), m.group(2) or ""
        if name not in allowed:
            raise _unknown_property(name, type_name)
        inner = {}
        for option in (o for o in options.split(";") if o.strip()):
            key, _, value = option.partition("=")
            inner[key.strip()] = value.strip()
        result[name] = inner
    return result


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


def key_definitions(table: schema.Table) -> list[dict]:
    """Alternate keys (`EntityKeyMetadata`): one per unique column of the emulated table."""
    return [
        {
            "@odata.type": "#Microsoft.Dynamics.CRM.EntityKeyMetadata",
            "MetadataId": _metadata_id(table.logical_name, "key", column),
            "LogicalName": f"{table.logical_name}_{column}_key",
            "SchemaName": f"{table.logical_name}_{column}_key",
            "EntityLogicalName": table.logical_name,
            "KeyAttributes": [column],
            "DisplayName": _label(f"{column} key"),
            "EntityKeyIndexStatus": "Active",
            "IsManaged": not table.logical_name.startswith(CUSTOM_PREFIX),
        }
        for column in table.unique
    ]


def _attributes(table: schema.Table, cast: str | None, options: dict[str, str], *, with_options: bool) -> list[dict]:
    """The table's attributes (of one cast, if given), shaped by `$select` / `$filter` / OptionSet expansion."""
    type_name = cast or "AttributeMetadata"
    allowed = ATTRIBUTE_PROPERTIES | ATTRIBUTE_CAST_PROPERTIES.get(cast or "", set())
    if with_options and "OptionSet" not in allowed:
        raise _unknown_property("OptionSet", type_name)
    attributes = [attribute_definition(table, c, with_options=with_options) for c in table.columns]
    if cast:
        attributes = [a for a in attributes if a["@odata.type"] == f"#Microsoft.Dynamics.CRM.{cast}"]
    keep = ("OptionSet",) if with_options else ()
    return _select(_filter(attributes, options.get("$filter")), options.get("$select"), allowed, type_name, keep)


def _entity(table: schema.Table, req_options: dict[str, str]) -> dict:
    """One EntityMetadata with `$select` and `$expand` (Attributes, Keys, each with its own `$select`) applied."""
    expand = _expansions(req_options.get("$expand"), ENTITY_NAVIGATION, "EntityMetadata")
    [body] = _select(
        [entity_definition(table)], req_options.get("$select"), ENTITY_PROPERTIES, "EntityMetadata", ENTITY_NAVIGATION
    )
    for name in ENTITY_NAVIGATION:
        body.pop(name, None)
    for name, options in expand.items():
        if name == "Attributes":
            body["Attributes"] = _attributes(table, None, options, with_options=False)
        elif name == "Keys":
            body["Keys"] = _select(key_definitions(table), options.get("$select"), KEY_PROPERTIES, "EntityKeyMetadata")
        else:
            body[name] = []  # relationships and privileges are not emulated
    return body


def _entity_definitions(req: Req, path: str) -> Resp:
    m = ENTITY_KEY.match(path)
    if not m:
        raise ApiError(404, "0x80060888", f"Resource not found for the segment '{path}'.")
    context = f"{req.base_url}$metadata#EntityDefinitions"
    key, rest = m.group("key"), m.group("rest")
    if key is None:
        if rest is not None:
            raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
        tables = [t for t in schema.DATAVERSE_TABLES if _filter([entity_definition(t)], req.query.get("$filter"))]
        items = [_entity(t, req.query) for t in tables]
        return json_resp(200, {"@odata.context": context, "value": items})
    table = _definition_table(key)
    if rest is None:
        return json_resp(200, {"@odata.context": f"{context}/$entity", **_entity(table, req.query)})
    if rest == "Keys":
        keys = _select(key_definitions(table), req.query.get("$select"), KEY_PROPERTIES, "EntityKeyMetadata")
        return json_resp(200, {"@odata.context": f"{context}({table.logical_name})/Keys", "value": keys})
    am = re.fullmatch(r"Attributes(?:\((?P<akey>[^)]*)\))?(?:/Microsoft\.Dynamics\.CRM\.(?P<cast>\w+))?", rest)
    if not am:
        raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
    cast = am.group("cast")
    if cast is not None and cast not in ATTRIBUTE_CAST_PROPERTIES and cast not in CAST_OF.values():
        raise ApiError(400, "0x80060888", f"The type 'Microsoft.Dynamics.CRM.{cast}' is not defined.")
    expand = _expansions(
        req.query.get("$expand"), {"OptionSet", "GlobalOptionSet"}, cast or "AttributeMetadata"
    )  # OptionSet exists only on the option casts: _attributes refuses it elsewhere
    query = {k: v for k, v in req.query.items() if k in ("$select", "$filter")}
    attributes = _attributes(table, cast, query, with_options="OptionSet" in expand)
    if am.group("akey"):
        wanted = re.fullmatch(r"LogicalName='(\w+)'", am.group("akey"))
        found = [a for a in attributes if wanted and a["LogicalName"] == wanted.group(1)]
        if not found:
            raise ApiError(404, "0x80040217", f"Could not find an attribute with key {am.group('akey')}.")
        return json_resp(200, {"@odata.context": f"{context}/Attributes/$entity", **found[0]})
    return json_resp(200, {"@odata.context": f"{context}({table.logical_name})/Attributes", "value": attributes})
