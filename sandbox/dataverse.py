"""The Dataverse Web API emulator: `/sandbox/dataverse/api/data/v9.2/...`.

Behaviours (protocols.md §1 and §4): PATCH is an upsert (`If-Match: *` update-only, `If-None-Match: *` create-only,
stale ETag 412), POST 204 + `OData-EntityId` (201 with `return=representation`), client-chosen keys, lookups read as
`_x_value` and written only through `nav@odata.bind`, alternate keys when configured, case-insensitive `$filter`,
no `$skip`, 5,000-row pages with an opaque paging-cookie `$skiptoken`, change tracking, the *Multiple actions.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote, unquote

from django.db import transaction

from sandbox import (
    dataverse_query,
    events,
    metadata,
    metering,
    multipart,
    odata,
    option_sets,
    plugin_registration,
    rows,
    schema,
    tracking,
    webhooks,
)
from sandbox.models import AppClient, Tombstone, row_model
from sandbox.wire import ApiError, Req, Resp, dataverse_error_response, json_resp

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ENTITY_PATH = re.compile(r"^(?P<set>\w+)(?:\((?P<key>.*)\))?(?:/(?P<rest>[\w.$]+))?$")
KNOWN_OPTIONS = {"$filter", "$select", "$orderby", "$top", "$count", "$skiptoken", "$deltatoken"}
UNSUPPORTED_OPTIONS = {"$skip", "$search", "$format"}
MULTIPLE_ACTIONS = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
MAX_MULTIPLE = 1000
# learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
# #maximum-url-length: 32 KB (32,768 characters); a request inside a `$batch` body may have up to 64 KB (65,536).
MAX_URL_LENGTH = 32_768
MAX_BATCHED_URL_LENGTH = 65_536


def not_found(table: schema.Table, record_id: str) -> ApiError:
    return ApiError(404, "0x80040217", f"{table.logical_name} With Id = {record_id} Does Not Exist")


def bad_request(message: str, code: str = "0x80060888") -> ApiError:
    return ApiError(400, code, message)


def handle(req: Req) -> Resp:
    try:
        with transaction.atomic(using=rows.DB):
            return _dispatch(req)
    except ApiError as err:
        return dataverse_error_response(err)


def _dispatch(req: Req) -> Resp:
    _refuse_long_url(req)
    path = req.path.strip("/")
    if path == "":
        return _service_document(req)
    if path == "$metadata" or path.startswith("EntityDefinitions"):
        return metadata.dataverse(req, path)
    if path == "$batch":
        if req.method != "POST":
            raise _method_not_allowed()
        return multipart.batch(req, _dispatch)
    if path == "InsertOptionValue":
        return option_sets.insert_option_value(req)
    if path == "WhoAmI" or path == "WhoAmI()":
        return json_resp(
            200,
            {
                "@odata.context": f"{req.base_url}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": schema.BUSINESS_UNIT_ID,
                "UserId": actor_id(req),
                "OrganizationId": schema.ORGANIZATION_ID,
            },
        )
    m = ENTITY_PATH.match(path)
    if m and m.group("set") in plugin_registration.ENTITY_SETS and m.group("rest") is None:
        return plugin_registration.handle(req, m.group("set"), m.group("key"))
    table = schema.table("dataverse", m.group("set")) if m else None
    if table is None:
        segment = path.split("(")[0].split("/")[0]
        raise ApiError(404, "0x80060888", f"Resource not found for the segment '{segment}'.")
    key, rest = m.group("key"), m.group("rest")
    if rest is not None:
        action = rest.removeprefix("Microsoft.Dynamics.CRM.")
        if key is None and action in MULTIPLE_ACTIONS:
            if req.method != "POST":
                raise _method_not_allowed()
            return _multiple(req, table, action)
        if key is None and rest == "$count" and req.method == "GET":
            return _count(req, table)
        raise ApiError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
    if key is None:
        if req.method == "GET":
            return _read_collection(req, table)
        if req.method == "POST":
            return _create(req, table)
        raise _method_not_allowed()
    if req.method == "GET":
        return _read_one(req, table, key)
    if req.method == "PATCH":
        return _patch(req, table, key)
    if req.method == "DELETE":
        return _delete(req, table, key)
    raise _method_not_allowed()


def _refuse_long_url(req: Req) -> None:
    # Microsoft publishes the limit, not the answer past it: 414 is HTTP's own status for it.
    limit = MAX_BATCHED_URL_LENGTH if req.in_batch else MAX_URL_LENGTH
    if req.url_length > limit:
        raise ApiError(
            414, "0x80060888", f"The request URL is {req.url_length:,} characters long; at most {limit:,} are accepted."
        )


def _method_not_allowed() -> ApiError:
    return ApiError(405, "0x80060888", "The requested HTTP method is not allowed on this resource.")


def _service_document(req: Req) -> Resp:
    value = [{"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set} for t in schema.DATAVERSE_TABLES]
    return json_resp(200, {"@odata.context": f"{req.base_url}$metadata", "value": value})


def actor_id(req: Req) -> str | None:
    """The systemuser behind the calling app registration (its application user)."""
    if not req.client_id:
        return None
    if "actor" not in req.cache:
        users = AppClient.objects.using(rows.DB).filter(client_id=req.client_id)
        req.cache["actor"] = users.values_list("systemuser_id", flat=True).first()
    return req.cache["actor"]


# --- keys ----------------------------------------------------------------------------------------------------------


def _split_key(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _key_literal(raw: str):
    raw = raw.strip()
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1].replace("''", "'")
    if GUID_RE.match(raw):
        return raw.lower()
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    raise bad_request(f"Bad Request - Error in query syntax: invalid key value {raw}.")


def _invalid_key(table: schema.Table) -> ApiError:
    return bad_request(
        f"The key in the request URI is not valid for resource '{table.entity_type}'. Ensure that the names and number "
        f"of key properties match the declared or alternate key properties for the resource '{table.entity_type}'."
    )


def parse_key(table: schema.Table, text: str) -> dict:
    """`(<guid>)`, `(accountid=<guid>)` or an alternate key `(accountnumber='X')` -> {"rid": id} or {field: value}."""
    text = text.strip()
    if GUID_RE.match(text):
        return {"rid": text.lower()}
    pairs = {}
    for part in _split_key(text):
        name, eq, value = part.partition("=")
        if not eq:
            raise _invalid_key(table)
        pairs[name.strip()] = _key_literal(value)
    if list(pairs) == [table.primary_key] and table.entity_set != "systemusers":
        value = pairs[table.primary_key]
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise _invalid_key(table)
        return {"rid": value}
    configured = rows.get_setting("alternate_keys").get(table.entity_set, [])
    if sorted(pairs) not in [sorted(k) for k in configured]:
        raise _invalid_key(table)
    values = {}
    for name, value in pairs.items():
        column = table.column(name)
        values[table.storage(column)] = value
    return values


def find_rid(table: schema.Table, key: dict) -> str | None:
    qs = row_model(table).objects.using(rows.DB)
    if "rid" in key:
        return qs.filter(rid=key["rid"]).values_list("rid", flat=True).first()
    lookups = {f"{k}__iexact" if isinstance(v, str) else k: v for k, v in key.items()}
    return qs.filter(**lookups).values_list("rid", flat=True).first()


def _key_text(key: dict) -> str:
    if "rid" in key:
        return key["rid"]
    return ",".join(f"{k}='{v}'" if isinstance(v, str) else f"{k}={v}" for k, v in key.items())


def entity_url(req: Req, table: schema.Table, key_text: str) -> str:
    return f"{req.base_url}{table.entity_set}({key_text})"


# --- reads -----------------------------------------------------------------------------------------------------


def _check_options(req: Req) -> None:
    for name in req.query:
        if name in UNSUPPORTED_OPTIONS:
            raise bad_request(f"The query parameter {name} is not supported")
        if name.startswith("$") and name not in KNOWN_OPTIONS:
            raise bad_request(f"The query parameter {name} is not supported by this emulator.")


def _annotations(req: Req) -> str:
    return req.prefer().get("odata.include-annotations", "")


def _filtered(req: Req, table: schema.Table):
    qs = row_model(table).objects.using(rows.DB).all()
    if req.query.get("$filter"):
        qs = qs.filter(odata.parse_filter(table, req.query["$filter"]))
    return qs


def _count(req: Req, table: schema.Table) -> Resp:
    if "$deltatoken" in req.query:
        return tracking.count(req, table)
    _check_options(req)
    return Resp(200, str(min(_filtered(req, table).count(), 5000)).encode(), {"Content-Type": "text/plain"})


def _int_option(req: Req, name: str) -> int | None:
    raw = req.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise bad_request(f"Invalid value '{raw}' for {name}.")
    return int(raw)


def _read_collection(req: Req, table: schema.Table) -> Resp:
    prefer = req.prefer()
    tracking_page = 'istracking="True"' in unquote(req.query.get("$skiptoken", ""))
    if "odata.track-changes" in prefer or "$deltatoken" in req.query or tracking_page:
        return tracking.read(req, table)
    _check_options(req)
    select = req.query.get("$select")
    columns = dataverse_query.select_columns(table, select)
    order = odata.parse_orderby(table, req.query.get("$orderby"))
    top = _int_option(req, "$top")
    qs = _filtered(req, table)
    cap = int(rows.get_setting("page_cap:dataverse"))
    applied = []
    page_size = cap
    if "odata.maxpagesize" in prefer:
        try:
            page_size = max(1, min(int(prefer["odata.maxpagesize"]), cap))
        except ValueError as exc:
            raise bad_request("odata.maxpagesize must be an integer.") from exc
        applied.append(f"odata.maxpagesize={page_size}")
        top = None  # documented: $top is ignored when odata.maxpagesize is present
    annotations = _annotations(req)
    if annotations:
        applied.insert(0, f'odata.include-annotations="{annotations}"')
    token, page_number = None, 1
    if req.query.get("$skiptoken"):
        token, page_number = dataverse_query.token_from_cookie(req.query["$skiptoken"])
    serializer = rows.dataverse_serializer(table, columns, annotations=annotations, key_last=bool(select))
    body = {"@odata.context": dataverse_query.context_url(req, table, select)}
    if req.query.get("$count") == "true":
        total = qs.count()
        body["@odata.count"] = min(total, 5000)
        if annotations:
            body["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(total, 5000)
            body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = total > 5000
    if top is not None and top > cap:
        top = cap
    page = rows.read_page(table, qs, serializer, order=order, page_size=page_size, token=token, limit=top)
    body["value"] = page.rows
    if page.next_token:
        cookie = quote(dataverse_query.paging_cookie(page.next_token, page_number + 1), safe="")
        kept = [p for p in req.raw_query.split("&") if p and not p.startswith(("%24skiptoken=", "$skiptoken="))]
        body["@odata.nextLink"] = f"{req.base_url}{table.entity_set}?" + "&".join(kept + [f"$skiptoken={cookie}"])
    headers = {"Preference-Applied": ",".join(applied)} if applied else {}
    return json_resp(200, body, headers)


def representation(req: Req, table: schema.Table, rid: str, select: str | None = None) -> dict:
    annotations = _annotations(req)
    serializer = rows.dataverse_serializer(
        table, dataverse_query.select_columns(table, select), annotations=annotations, key_last=bool(select)
    )
    found = row_model(table).objects.using(rows.DB).filter(rid=rid).values_list(*serializer.fields).first()
    if found is None:
        raise not_found(table, rid)
    return {"@odata.context": dataverse_query.context_url(req, table, select, "/$entity"), **serializer.build(found)}


def _read_one(req: Req, table: schema.Table, key_text: str) -> Resp:
    _check_options(req)
    key = parse_key(table, key_text)
    rid = find_rid(table, key)
    if rid is None:
        raise not_found(table, _key_text(key))
    body = representation(req, table, rid, req.query.get("$select"))
    inm = req.header("if-none-match").strip()
    if inm and inm == body["@odata.etag"] and not _annotations(req):
        return Resp(304, b"", {"ETag": body["@odata.etag"]})
    return json_resp(200, body, {"ETag": body["@odata.etag"]})


# --- validation ------------------------------------------------------------------------------------------------


def _validation(message: str, code: str = "0x80044331") -> ApiError:
    return ApiError(400, code, message)


def _coerce(table: schema.Table, column: schema.Column, value):
    kind, name = column.kind, column.name
    if value is None:
        return None
    if kind in ("string", "memo"):
        if not isinstance(value, str):
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.String'.")
        if column.max_length and len(value) > column.max_length:
            raise _validation(
                f"A validation error occurred.  The length of the '{name}' attribute of the '{table.logical_name}' "
                f"entity exceeded the maximum allowed length of '{column.max_length}'."
            )
        return value
    if kind in ("integer", "choice"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.")
        if kind == "choice" and not option_sets.is_option(table, column, value):
            raise _validation(
                f"A validation error occurred. The value {value} of '{name}' on record of type "
                f"'{table.logical_name}' is outside the valid range.",
                "0x8004431a",
            )
        _check_range(table, column, value)
        return value
    if kind in ("decimal", "money"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Decimal'.")
        _check_range(table, column, value)
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'.")
        return value
    if kind == "guid":
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid'.")
        return value.lower()
    raise bad_request(f"Unsupported value for '{name}'.")


def _check_range(table: schema.Table, column: schema.Column, value) -> None:
    low, high = column.minimum, column.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        raise _validation(
            f"A validation error occurred. The value {value} of '{column.name}' on record of type "
            f"'{table.logical_name}' is outside the valid range. Accepted range: {low:g} to {high:g}"
        )


def _resolve_bind(req: Req, column: schema.Column, target_set: str | None, value) -> tuple[str | None, str | None]:
    """A `nav@odata.bind` value -> (target row id, target logical name). Missing targets are a 404."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        raise bad_request(f"The value of '{column.name}@odata.bind' must be an entity reference URL.")
    text = value.strip()
    if text.startswith("$") and text[1:].isdigit():
        if text not in req.content_ids:
            raise bad_request(f"Content-ID Reference: '{text}' does not exist in the batch context.")
        text = req.content_ids[text]
    if "/api/data/" in text:
        text = re.sub(r"^.*?/api/data/v[\d.]+/", "", text)
    text = unquote(text.lstrip("/"))
    m = re.fullmatch(r"(\w+)\((.*)\)", text)
    if not m:
        raise bad_request(f"The entity reference '{value}' is not valid.")
    entity_set, key_text = m.groups()
    allowed = (target_set,) if target_set else column.targets
    target = schema.table("dataverse", entity_set)
    if target is None or entity_set not in allowed:
        raise bad_request(
            f"The entity reference '{value}' is not of a type the navigation property '{column.name}' accepts "
            f"({', '.join(allowed)})."
        )
    key = parse_key(target, key_text)
    rid = find_rid(target, key)
    if rid is None:
        raise not_found(target, _key_text(key))
    return rid, target.logical_name


def apply_body(req: Req, table: schema.Table, body: dict, *, creating: bool, current: dict | None) -> dict:
    """Validate a create/update body; returns storage values (lookups resolved, computed columns set)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    values = {}
    for name, value in body.items():
        if name.endswith("@odata.bind"):
            nav = name[: -len("@odata.bind")]
            target_set = None
            base = nav
            if nav.startswith("parentcustomerid_") and table.column("_parentcustomerid_value"):
                base, suffix = "parentcustomerid", nav[len("parentcustomerid_") :]
                target_set = {"account": "accounts", "contact": "contacts"}.get(suffix)
                if target_set is None:
                    raise _undeclared(table, nav)
            column = table.column(f"_{base}_value")
            if column is None or column.read_only or (base == "parentcustomerid" and target_set is None):
                raise _undeclared(table, nav)
            rid, logical = _resolve_bind(req, column, target_set, value)
            values[table.storage(column)] = rid
            if base == "parentcustomerid":
                values["parentcustomeridtype"] = logical
            continue
        if name.startswith("@") or "@" in name:
            continue  # other annotations (e.g. @odata.type, @odata.etag) carry no data
        column = table.column(name)
        if column is None:
            lookup = table.column(f"_{name}_value")
            if lookup is not None and value is None and not lookup.read_only:
                values[table.storage(lookup)] = None  # clearing a lookup by its navigation property
                if name == "parentcustomerid":
                    values["parentcustomeridtype"] = None
                continue
            raise _undeclared(table, name)
        if column.kind == "lookup":
            raise bad_request(
                "CRM do not support direct update of Entity Reference properties, Use Navigation properties instead."
            )
        if column.name == table.primary_key:
            values["rid"] = _coerce(table, column, value)
            continue
        if column.read_only:
            continue  # the service ignores system-computed columns sent by clients
        if creating and column.not_for_create:
            raise bad_request(f"{column.name} is not a valid attribute for create", "0x80040203")
        values[table.storage(column)] = _coerce(table, column, value)
    merged = {**(current or {}), **values}
    for column in table.columns:
        if column.required and column.name != table.primary_key:
            field = table.storage(column)
            if (creating or field in values) and merged.get(field) in (None, ""):
                raise _validation(
                    f"A validation error occurred. The '{column.name}' attribute of the '{table.logical_name}' entity "
                    "is required and cannot be empty.",
                    "0x80040203",
                )
    _computed(table, values, merged)
    return values


def _undeclared(table: schema.Table, name: str) -> ApiError:
    return bad_request(
        f"An undeclared property '{name}' which only has property annotations in the payload but no property value "
        f"was found in the payload. In OData, only declared navigation properties and declared named streams can be "
        f"represented as properties without values."
        if "@" not in name
        else f"The property '{name}' does not exist on type '{table.entity_type}'."
    )


def _computed(table: schema.Table, values: dict, merged: dict) -> None:
    if table.entity_set in ("contacts", "systemusers") and ({"firstname", "lastname"} & set(values)):
        values["fullname"] = " ".join(p for p in (merged.get("firstname"), merged.get("lastname")) if p)
    if table.entity_set == "contacts" and "parentcustomerid" in values:
        values["accountid"] = values["parentcustomerid"] if merged.get("parentcustomeridtype") == "account" else None
    if table.column("statecode") and "statecode" in values and "statuscode" not in values:
        values["statuscode"] = 1 if values["statecode"] in (0, None) else 2
    if table.column("statuscode") and merged.get("statuscode") is not None:
        state = merged.get("statecode") or 0
        if (merged["statuscode"] == 1) != (state == 0):
            raise _validation(
                f"{merged['statuscode']} is not a valid status code for state code {table.logical_name}State.{state}",
                "0x8004431a",
            )


def _alternate_keys(req: Req, table: schema.Table) -> list[list[str]]:
    if "alternate_keys" not in req.cache:
        req.cache["alternate_keys"] = rows.get_setting("alternate_keys")
    return req.cache["alternate_keys"].get(table.entity_set, [])


def _check_unique(req: Req, table: schema.Table, rid: str, merged: dict) -> None:
    model = row_model(table).objects.using(rows.DB)
    iso = merged.get("isocurrencycode") if table.entity_set == "transactioncurrencies" else None
    if iso and model.filter(isocurrencycode__iexact=iso).exclude(rid=rid).exists():
        raise ApiError(
            412, "0x80048cf3", "The currency cannot be created because a currency with the same ISO code exists."
        )
    for key in _alternate_keys(req, table):
        wanted = {c: merged.get(c) for c in key}
        if any(v is None for v in wanted.values()):
            continue
        lookups = {f"{k}__iexact" if isinstance(v, str) else k: v for k, v in wanted.items()}
        if model.filter(**lookups).exclude(rid=rid).exists():
            cols = ",".join(key)
            raise ApiError(
                412,
                "0x80060892",
                f"Entity Key {table.logical_name}_{'_'.join(key)} violated. A record with the same value for {cols} "
                "already exists. A duplicate record cannot be created. Try entering a unique value.",
            )


# --- writes ----------------------------------------------------------------------------------------------------


def _defaults(req: Req, table: schema.Table, actor: str | None) -> dict:
    cached = req.cache.get(("defaults", table.entity_set, actor))
    if cached is not None:
        return dict(cached)
    values = {}
    if table.column("statecode"):
        values.update(statecode=0, statuscode=1)
    if table.column("_ownerid_value"):
        values["ownerid"] = actor
    if table.column("_transactioncurrencyid_value"):
        base = (
            row_model(schema.table("dataverse", "transactioncurrencies"))
            .objects.using(rows.DB)
            .filter(currencytype=0)
            .values_list("rid", flat=True)
            .first()
        )
        values["transactioncurrencyid"] = base
    req.cache[("defaults", table.entity_set, actor)] = dict(values)
    return values


def _next_version(req: Req) -> int:
    """Bulk actions reserve their row versions in one go; single writes take one each."""
    reserved = req.cache.get("versions")
    return next(reserved) if reserved is not None else rows.next_versions()


def insert(req: Req, table: schema.Table, body: dict, *, key: dict | None = None, actor: str | None = None) -> str:
    """Create one row; a client-chosen id (body or URL) is kept. Returns the id."""
    metering.count_written()
    values = apply_body(req, table, body, creating=True, current=None)
    if key and "rid" in key:
        if values.get("rid", key["rid"]) != key["rid"]:
            raise bad_request("The id in the URL and the id in the body do not match.")
        values["rid"] = key["rid"]
    elif key:
        for field, value in key.items():
            values.setdefault(field, value)  # body key values win over URL ones on create
    rid = values.pop("rid", None) or str(uuid.uuid4())
    model = row_model(table)
    pending = req.cache.get("pending")  # bulk actions collect inserts and write them together
    known = req.cache["known"] if pending is not None else ()
    duplicate = rid in known if pending is not None else model.objects.using(rows.DB).filter(rid=rid).exists()
    if duplicate:
        raise ApiError(412, "0x80040237", "A record with matching key values already exists.")
    actor = actor if actor is not None else actor_id(req)
    row = {**_defaults(req, table, actor), **values}
    _computed(table, row, row)
    _check_unique(req, table, rid, row)
    version = _next_version(req)
    stamp = rows.later_than(None, seconds_only=True)
    instance = model(
        rid=rid, created_at=stamp, modified_at=stamp, version=version, created_by=actor, modified_by=actor, **row
    )
    if pending is not None:
        pending[rid] = instance
        req.cache["known"].add(rid)
    else:
        instance.save(using=rows.DB, force_insert=True)
    _notify(req, table, "Create", rid, row, actor, stamp)
    return rid


def modify(
    req: Req, table: schema.Table, rid: str, body: dict, *, if_match: str = "", actor: str | None = None
) -> None:
    metering.count_written()
    model = row_model(table)
    if rid in req.cache.get("pending", ()):
        _flush_inserts(req, table)
    current = req.cache.get("current_rows", {}).pop(rid, None)
    if current is None:
        current = model.objects.using(rows.DB).select_for_update().filter(rid=rid).values().first()
    if current is None:
        raise not_found(table, rid)
    check_if_match(current, if_match)
    values = apply_body(req, table, body, creating=False, current=current)
    if values.get("rid", rid) != rid:
        raise bad_request("The id in the URL and the id in the body do not match.")
    values.pop("rid", None)
    merged = {**current, **values}
    _check_unique(req, table, rid, merged)
    actor = actor if actor is not None else actor_id(req)
    stamp = max(current["modified_at"], rows.later_than(None, seconds_only=True))
    model.objects.using(rows.DB).filter(rid=rid).update(
        modified_at=stamp, version=_next_version(req), modified_by=actor, **values
    )
    _notify(req, table, "Update", rid, values, actor, stamp)


def _flush_inserts(req: Req, table: schema.Table) -> None:
    pending = req.cache.get("pending")
    if pending:
        rows.insert_many(row_model(table), list(pending.values()))
        pending.clear()


def check_if_match(current: dict, if_match: str) -> None:
    if if_match and if_match != "*" and if_match != f'W/"{current["version"]}"':
        raise ApiError(
            412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided."
        )


def remove(table: schema.Table, rid: str, *, if_match: str = "", actor: str | None = None) -> None:
    metering.count_written()
    model = row_model(table)
    current = model.objects.using(rows.DB).filter(rid=rid).values("version").first()
    if current is None:
        raise not_found(table, rid)
    check_if_match(current, if_match)
    model.objects.using(rows.DB).filter(rid=rid).delete()
    Tombstone.objects.using(rows.DB).create(
        entity_set=table.entity_set, rid=rid, version=rows.next_versions(), deleted_at=rows.now_ms()
    )
    _notify(None, table, "Delete", rid, {}, actor, rows.now_ms())


def _notify(
    req: Req | None, table: schema.Table, message: str, rid: str, values: dict, actor: str | None, stamp: str
) -> None:
    hooked = req.cache.get(("hooks", table.entity_set)) if req is not None else None
    if hooked is None:
        hooked = events.has_dataverse_hooks(table)
        if req is not None:
            req.cache[("hooks", table.entity_set)] = hooked
    if not hooked:
        return
    events.dataverse_changed(table, message, rid, webhooks.execution_context(table, message, rid, values, actor, stamp))


def _create(req: Req, table: schema.Table) -> Resp:
    rid = insert(req, table, req.json())
    return _write_response(req, table, rid, created=True)


def _write_response(req: Req, table: schema.Table, rid: str, *, created: bool, key_text: str | None = None) -> Resp:
    if req.prefer().get("return") == "representation":
        body = representation(req, table, rid, req.query.get("$select"))
        headers = {"ETag": body["@odata.etag"], "Preference-Applied": "return=representation"}
        return json_resp(201 if created else 200, body, headers)
    url = entity_url(req, table, key_text or rid)
    return Resp(204, b"", {"OData-EntityId": url, "OData-Version": "4.0"})


def _patch(req: Req, table: schema.Table, key_text: str) -> Resp:
    key = parse_key(table, key_text)
    rid = find_rid(table, key)
    if_match = req.header("if-match").strip()
    if_none_match = req.header("if-none-match").strip()
    body = req.json()
    text = key_text if "rid" not in key else None
    if rid is None:
        if if_match:
            raise not_found(table, _key_text(key))
        rid = insert(req, table, body, key=key)
        return _write_response(req, table, rid, created=True, key_text=text)
    if if_none_match == "*":
        raise ApiError(412, "0x80040237", "A record with matching key values already exists.")
    if "rid" not in key:
        body = {k: v for k, v in body.items() if k not in key}  # on update, key values in the body are discarded
    modify(req, table, rid, body, if_match=if_match)
    return _write_response(req, table, rid, created=False, key_text=text)


def _delete(req: Req, table: schema.Table, key_text: str) -> Resp:
    key = parse_key(table, key_text)
    rid = find_rid(table, key)
    if rid is None:
        raise not_found(table, _key_text(key))
    remove(table, rid, if_match=req.header("if-match").strip(), actor=actor_id(req))
    return Resp(204)


# --- CreateMultiple / UpdateMultiple / UpsertMultiple -------------------------------------------------------------


def _multiple(req: Req, table: schema.Table, action: str) -> Resp:
    """All-or-nothing bulk writes of one table (the request's transaction rolls back on the first error)."""
    payload = req.json()
    targets = payload.get("Targets") if isinstance(payload, dict) else None
    if not isinstance(targets, list) or not targets:
        raise bad_request(f"{action} needs a non-empty 'Targets' array.")
    if len(targets) > MAX_MULTIPLE:
        raise bad_request(f"The number of records ({len(targets)}) exceeds the maximum of {MAX_MULTIPLE} for {action}.")
    actor = actor_id(req)
    first = rows.next_versions(len(targets))  # one row version per target, reserved at once
    req.cache["versions"] = iter(range(first, first + len(targets)))
    wanted = [
        str(t.get(table.primary_key)).lower() for t in targets if isinstance(t, dict) and t.get(table.primary_key)
    ]
    current_rows = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        current_rows.update(
            {r["rid"]: r for r in row_model(table).objects.using(rows.DB).filter(rid__in=chunk).values()}
        )
    existing = set(current_rows)
    req.cache["current_rows"] = current_rows  # modify() takes each row from here instead of one query per row
    if not _alternate_keys(req, table) and table.entity_set != "transactioncurrencies":
        # Key uniqueness is checked in the database, so only tables without such checks can defer their inserts.
        req.cache["pending"], req.cache["known"] = {}, set(existing)
    ids = []
    for target in targets:
        if not isinstance(target, dict):
            raise bad_request("Each target must be a JSON object.")
        if target.get("@odata.type") != f"Microsoft.Dynamics.CRM.{table.logical_name}":
            raise bad_request(
                f"The '@odata.type' annotation is required on every item of Targets and must be "
                f"'Microsoft.Dynamics.CRM.{table.logical_name}'."
            )
        body = {k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")}
        key = None
        if "@odata.id" in target:
            m = re.fullmatch(rf"(?:.*/)?{table.entity_set}\((.*)\)", str(target["@odata.id"]))
            if not m:
                raise bad_request(f"The @odata.id '{target['@odata.id']}' is not valid for {table.entity_set}.")
            key = parse_key(table, m.group(1))
        elif table.primary_key in body and body[table.primary_key] is not None:
            key = {"rid": str(body[table.primary_key]).lower()}
        if action == "CreateMultiple":
            ids.append(insert(req, table, body, key=key, actor=actor))
            existing.add(ids[-1])
            continue
        if key is None:
            raise bad_request(f"{action}: every target needs its primary key ({table.primary_key}) or @odata.id.")
        rid = (key["rid"] if key["rid"] in existing else None) if "rid" in key else find_rid(table, key)
        if rid is None:
            if action == "UpdateMultiple":
                raise not_found(table, _key_text(key))
            ids.append(insert(req, table, body, key=key, actor=actor))
            existing.add(ids[-1])
        else:
            if "rid" not in key:
                body = {k: v for k, v in body.items() if k not in key}
            modify(req, table, rid, body, actor=actor)
            ids.append(rid)
    _flush_inserts(req, table)
    if action == "CreateMultiple":
        context = f"{req.base_url}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
        return json_resp(200, {"@odata.context": context, "Ids": ids})
    return Resp(204, b"", {"OData-Version": "4.0"})
