"""The Business Central API v2.0 emulator: `/sandbox/bc/v2.0/{tenant}/{environment}/api/v2.0/...`.

Behaviours (protocols.md §2 and §4): company scoping, required `If-Match` on PATCH, 409 `Request_EntityChanged`
on a stale ETag, no upsert, number series, upper-cased and length-checked Code fields, blank currency = LCY,
server-driven paging with an opaque `$skiptoken` (and `aid=FIN`), `or` only on one field, JSON `$batch`.
"""

from __future__ import annotations

import json
import re
import uuid

from django.db import IntegrityError, transaction

from sandbox import companies, events, metadata, metering, odata, rows, schema, webhooks
from sandbox.models import Company, row_model
from sandbox.wire import (
    JSON_TYPE,
    ApiError,
    Req,
    Resp,
    bc_error_response,
    bc_method_not_allowed,
    dumps,
    json_resp,
    parse_query,
)

ENTITY_PATH = re.compile(r"^companies\((?P<cid>[^)]*)\)/(?P<set>\w+)(?:\((?P<id>[^)]*)\))?(?P<count>/\$count)?$")
TOP_LEVEL_SET = re.compile(r"^(?P<set>\w+)(?:\((?P<id>[^)]*)\))?(?P<count>/\$count)?$")
COMPANY_PATH = re.compile(r"^companies(?:\((?P<cid>[^)]*)\))?$")
SUBSCRIPTION_PATH = re.compile(r"^subscriptions(?:\('(?P<id>[^']*)'\))?$")
KNOWN_OPTIONS = {
    "$filter",
    "$select",
    "$orderby",
    "$top",
    "$skip",
    "$count",
    "$skiptoken",
    "$schemaversion",
    "aid",
    "company",
}
RESERVED_PROPERTIES = ("@odata.etag", "@odata.context")
MAX_BATCH = 100


def not_found(table: schema.Table, record_id: str) -> ApiError:
    return ApiError(
        404,
        "BadRequest_NotFound",
        f"The {table.caption} does not exist. Identification fields and values: Id='{record_id}'",
    )


def handle(req: Req) -> Resp:
    """Dispatch one request below the API root; errors come back in Business Central's envelope."""
    try:
        with transaction.atomic(using=rows.DB):
            return _dispatch(req)
    except ApiError as err:
        return bc_error_response(err)


def _dispatch(req: Req) -> Resp:
    path = req.path.strip("/")
    if path == "":
        return _service_document(req)
    if path == "$metadata":
        return metadata.bc_metadata(req.api_route)
    if path == "$batch":
        if req.in_batch:
            raise ApiError(400, "BadRequest", "Batches cannot be nested.")
        if req.method != "POST":
            raise bc_method_not_allowed()
        return batch(req)
    if m := SUBSCRIPTION_PATH.match(path):
        return webhooks.bc_subscriptions(req, m.group("id"))
    if m := COMPANY_PATH.match(path):
        return _companies(req, m.group("cid"))
    if m := ENTITY_PATH.match(path):
        company = companies.company(m.group("cid"))
        return _entity(req, company, m.group("set"), m.group("id"), bool(m.group("count")))
    if (m := TOP_LEVEL_SET.match(path)) and "company" in req.query:
        company = companies.company(req.query["company"])
        return _entity(req, company, m.group("set"), m.group("id"), bool(m.group("count")))
    if (m := TOP_LEVEL_SET.match(path)) and req.in_batch and req.header("company"):
        # Inside a JSON $batch a request may name its company in a `Company` header (by name or id) instead of the
        # URL, as in Microsoft's batch example (`"url": "items(<id>)"` with `"Company": "CRONUS USA, Inc."`).
        company = companies.named(req.header("company"))
        return _entity(req, company, m.group("set"), m.group("id"), bool(m.group("count")))
    if TOP_LEVEL_SET.match(path) and schema.table("bc", path.split("(")[0]):
        raise ApiError(
            400,
            "Internal_CompanyNotFound",
            "Cannot process the request because the default company cannot be found. You can specify a company in the "
            "request URL (companies(<id>)/...) or as the 'company' query parameter.",
        )
    raise ApiError(404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{path.split('/')[0]}'.")


def _service_document(req: Req) -> Resp:
    sets = ["companies", "subscriptions"] + [t.entity_set for t in schema.BC_TABLES if t.api_route == req.api_route]
    value = [{"name": s, "kind": "EntitySet", "url": s} for s in sets]
    return json_resp(200, {"@odata.context": f"{req.base_url}$metadata", "value": value})


def company_json(company: Company) -> dict:
    return {
        "id": company.rid,
        "systemVersion": company.system_version,
        "timestamp": uuid.UUID(company.rid).int % 10**8,
        "name": company.name,
        "displayName": company.display_name,
        "businessProfileId": company.business_profile_id,
        "systemCreatedAt": company.modified_at,
        "systemCreatedBy": schema.ZERO_GUID,
        "systemModifiedAt": company.modified_at,
        "systemModifiedBy": schema.ZERO_GUID,
    }


def _companies(req: Req, cid: str | None) -> Resp:
    if req.method != "GET":
        raise bc_method_not_allowed()
    if cid is not None:
        company = companies.company(cid)
        body = {"@odata.context": f"{req.base_url}$metadata#companies/$entity", **company_json(company)}
        return json_resp(200, body)
    found = Company.objects.using(rows.DB).order_by("name")
    if "$filter" in req.query:
        wanted = re.fullmatch(r"\s*name eq '((?:[^']|'')*)'\s*", req.query["$filter"])
        if not wanted:
            raise ApiError(400, "BadRequest_NotFound", "Bad Request - Error in query syntax.")
        found = found.filter(name=wanted.group(1).replace("''", "'"))
    value = [company_json(c) for c in found]
    return json_resp(200, {"@odata.context": f"{req.base_url}$metadata#companies", "value": value})


def _table(req: Req, entity_set: str) -> schema.Table:
    table = schema.table("bc", entity_set)
    if table is None or table.api_route != req.api_route:  # an API page answers under its own route only
        raise ApiError(404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{entity_set}'.")
    return table


def _entity(req: Req, company: Company, entity_set: str, record_id: str | None, count: bool) -> Resp:
    table = _table(req, entity_set)
    if record_id is not None:
        record_id = companies.guid(record_id, "id")
    if req.method == "GET":
        if count:
            return _count(req, table, company)
        if record_id is None:
            return _read_collection(req, table, company)
        return _read_one(req, table, company, record_id)
    if count:
        raise bc_method_not_allowed()
    if req.method == "POST" and record_id is None:
        return _create(req, table, company)
    if req.method == "PATCH" and record_id is not None:
        return _update(req, table, company, record_id)
    if req.method == "DELETE" and record_id is not None:
        return _delete(req, table, company, record_id)
    raise bc_method_not_allowed()


# --- reads ---------------------------------------------------------------------------------------------------------


def _queryset(table: schema.Table, company: Company):
    return row_model(table).objects.using(rows.DB).filter(company=company.rid)


def _check_options(req: Req) -> None:
    for name in req.query:
        if name.startswith("$") and name not in KNOWN_OPTIONS:
            if name == "$expand":
                raise ApiError(400, "BadRequest_NotSupported", "$expand is not supported by this emulator.")
            raise ApiError(400, "BadRequest_NotFound", f"The query parameter '{name}' is not supported.")


def _filtered(req: Req, table: schema.Table, company: Company):
    qs = _queryset(table, company)
    if req.query.get("$filter"):
        qs = qs.filter(
            odata.parse_filter(table, req.query["$filter"], schema_version=req.query.get("$schemaversion", ""))
        )
    return qs


def _int_option(req: Req, name: str) -> int | None:
    raw = req.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(
            400, "BadRequest_NotFound", f"Invalid value '{raw}' for {name}: a non-negative integer is expected."
        )
    return int(raw)


def _count(req: Req, table: schema.Table, company: Company) -> Resp:
    _check_options(req)
    return Resp(200, str(_filtered(req, table, company).count()).encode(), {"Content-Type": "text/plain"})


def _context(req: Req, table: schema.Table, company: Company, select: str | None, entity: bool = False) -> str:
    selected = f"({select})" if select else ""
    suffix = "/$entity" if entity else ""
    return f"{req.base_url}$metadata#companies({company.rid})/{table.entity_set}{selected}{suffix}"


def _read_collection(req: Req, table: schema.Table, company: Company) -> Resp:
    _check_options(req)
    select = req.query.get("$select")
    columns = odata.parse_select(table, select)
    order = odata.parse_orderby(table, req.query.get("$orderby"))
    top, skip = _int_option(req, "$top"), _int_option(req, "$skip")
    qs = _filtered(req, table, company)
    cap = int(rows.get_setting("page_cap:bc"))
    headers = {}
    page_size = cap
    prefer = req.prefer()
    if "odata.maxpagesize" in prefer:
        try:
            asked = int(prefer["odata.maxpagesize"])
        except ValueError as exc:
            raise ApiError(400, "BadRequest_NotFound", "odata.maxpagesize must be an integer.") from exc
        page_size = max(1, min(asked, cap))
        headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
    token = odata.decode_token("bc", req.query["$skiptoken"]) if req.query.get("$skiptoken") else None
    body = {"@odata.context": _context(req, table, company, select)}
    if req.query.get("$count") == "true":
        body["@odata.count"] = qs.count()
    page = rows.read_page(
        table,
        qs,
        rows.bc_serializer(table, columns),
        order=order,
        page_size=page_size,
        token=token,
        limit=top,
        skip=skip or 0,
    )
    body["value"] = page.rows
    if page.next_token:
        body["@odata.nextLink"] = _next_link(req, page.next_token)
    return json_resp(200, body, headers)


def _next_link(req: Req, token: str) -> str:
    kept = [p for p in req.raw_query.split("&") if p and not p.startswith(("%24skiptoken=", "$skiptoken=", "aid="))]
    kept += ["aid=FIN", f"$skiptoken={token}"]
    return req.base_url + req.path.strip("/") + "?" + "&".join(kept)


def _read_one(req: Req, table: schema.Table, company: Company, record_id: str) -> Resp:
    _check_options(req)
    select = req.query.get("$select")
    serializer = rows.bc_serializer(table, odata.parse_select(table, select))
    found = _queryset(table, company).filter(rid=record_id).values_list(*serializer.fields).first()
    if found is None:
        raise not_found(table, record_id)
    row = serializer.build(found)
    if req.header("if-none-match") == row["@odata.etag"]:
        return Resp(304, b"", {"ETag": row["@odata.etag"]})
    return json_resp(200, {"@odata.context": _context(req, table, company, select, entity=True), **row})


def entity_body(req: Req, table: schema.Table, company: Company, record_id: str) -> dict:
    serializer = rows.bc_serializer(table, list(table.columns))
    found = _queryset(table, company).filter(rid=record_id).values_list(*serializer.fields).get()
    return {"@odata.context": _context(req, table, company, None, entity=True), **serializer.build(found)}


# --- writes --------------------------------------------------------------------------------------------------------


def _string_exceeded(value: str, limit: int) -> ApiError:
    return ApiError(
        400,
        "Application_StringExceededLength",
        f"The length of the string is {len(value)}, but it must be less than or equal to {limit} characters. "
        f"Value: {value}",
    )


def coerce(table: schema.Table, name: str, value):
    """A JSON property value as stored, or the error Business Central gives for it."""
    column = table.column(name)
    if column is None:
        raise ApiError(
            400,
            "BadRequest_NotFound",
            f"The property '{name}' does not exist on type '{table.entity_type}'. "
            "Make sure to only use property names that are defined by the type.",
        )
    kind = column.kind
    if kind in ("text", "code", "phone", "enum"):
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise _conversion_error(value, "Edm.String")
        if kind == "enum":
            if value not in column.options:
                raise ApiError(
                    400,
                    "BadRequest_InvalidRequestBody",
                    f"Cannot convert the literal '{value}' to the expected type "
                    f"'Microsoft.NAV.{table.logical_name}{name[0].upper()}{name[1:]}'.",
                )
            return value
        if column.max_length and len(value) > column.max_length:
            raise _string_exceeded(value, column.max_length)
        if kind == "code":
            return value.upper()
        if kind == "phone" and re.search(r"[A-Za-z]", value):
            raise ApiError(
                400,
                "Application_FieldValidationException",
                f"The field {name} of table {table.caption} must not contain letters.",
            )
        return value
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _conversion_error(value, "Edm.Decimal")
        if (column.minimum is not None and value < column.minimum) or (
            column.maximum is not None and value > column.maximum
        ):
            raise ApiError(
                400,
                "Application_FieldValidationException",
                f"The value {value} of {name} must be between {column.minimum} and {column.maximum}.",
            )
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _conversion_error(value, "Edm.Boolean")
        return value
    if kind == "guid":
        if value is None:
            return schema.ZERO_GUID
        if not isinstance(value, str) or not re.fullmatch(companies.GUID, value):
            raise ApiError(400, "Application_InvalidGUID", f"Invalid GUID: '{value}'.")
        return value.lower()
    raise _conversion_error(value, kind)


def _conversion_error(value, edm_type: str) -> ApiError:
    return ApiError(
        400, "BadRequest_InvalidRequestBody", f"Cannot convert the literal '{value}' to the expected type '{edm_type}'."
    )


def _record_not_found(caption: str, field: str, value: str) -> ApiError:
    return ApiError(
        400,
        "Internal_RecordNotFound",
        f"The {caption} does not exist. Identification fields and values: {field}='{value}'",
    )


def _related(entity_set: str, company: str, **lookup) -> dict | None:
    table = schema.table("bc", entity_set)
    return row_model(table).objects.using(rows.DB).filter(company=company, **lookup).values("rid", "code").first()


def apply_values(table: schema.Table, company: str, body: dict, current: dict | None) -> dict:
    """Validate a POST/PATCH body; returns storage values to write (relations resolved, derived fields set)."""
    values = {}
    for name, value in body.items():
        if name in RESERVED_PROPERTIES or name.startswith("@"):
            continue
        column = table.column(name)
        if column is not None and column.read_only:
            stored = current.get(table.storage(column)) if current else None
            if current is not None and (value == stored or (name == "id" and str(value).lower() == stored)):
                continue
            raise ApiError(400, "BadRequest_InvalidOperation", f"Control '{name}' is read-only.")
        values[table.storage(column) if column else name] = coerce(table, name, value)
    merged = {**(current or {}), **values}
    if "currencyCode" in values or "currencyId" in values:
        _resolve_currency(company, values, merged)
    for field, caption in (("paymentTermsId", "Payment Terms"), ("shipmentMethodId", "Shipment Method")):
        target = {"paymentTermsId": "paymentTerms", "shipmentMethodId": "shipmentMethods"}[field]
        if values.get(field, schema.ZERO_GUID) != schema.ZERO_GUID and not _related(target, company, rid=values[field]):
            raise _record_not_found(caption, "SystemId", values[field])
    if values.get("salespersonCode") and not _related("salespeoplePurchasers", company, code=values["salespersonCode"]):
        raise _record_not_found("Salesperson/Purchaser", "Code", values["salespersonCode"])
    for column in table.columns:
        code = values.get(column.name) if column.code_table else None
        if code and not _related(column.code_table, company, code=code):
            raise _record_not_found(schema.table("bc", column.code_table).caption, "Code", code)
    if table.entity_set == "contacts" and "companyNumber" in values:
        values["companyName"] = _contact_company_name(company, values["companyNumber"])
    if table.entity_set == "contacts" and ("displayName" in values or current is None):
        values["searchName"] = merged.get("displayName", "").upper()[:100]
    for column in table.columns:
        blank = column.required and not merged.get(table.storage(column))
        if blank and (current is None or table.storage(column) in values):
            raise ApiError(
                400, "BadRequest_RequiredParamNotProvided", f"Field '{column.name}' must not be blank or empty."
            )
    return values


def _resolve_currency(company: str, values: dict, merged: dict) -> None:
    code = values.get("currencyCode")
    currency_id = values.get("currencyId")
    if code == schema.LOCAL_CURRENCY:
        code = values["currencyCode"] = ""
    by_id = None
    if currency_id is not None and currency_id != schema.ZERO_GUID:
        by_id = _related("currencies", company, rid=currency_id)
        if by_id is None:
            raise _record_not_found("Currency", "SystemId", currency_id)
    if code:
        by_code = _related("currencies", company, code=code)
        if by_code is None:
            raise _record_not_found("Currency", "Code", code)
        if currency_id is not None and by_id != by_code:
            raise ApiError(400, "Application_FieldValidationException", "The currencyId and currencyCode do not match.")
        values["currencyId"] = by_code["rid"]
    elif code == "":
        if currency_id not in (None, schema.ZERO_GUID):
            raise ApiError(400, "Application_FieldValidationException", "The currencyId and currencyCode do not match.")
        values["currencyId"] = schema.ZERO_GUID
    else:  # only the id was sent
        values["currencyCode"] = by_id["code"] if by_id else ""
        values["currencyId"] = by_id["rid"] if by_id else schema.ZERO_GUID


def _contact_company_name(company: str, number: str) -> str:
    if not number:
        return ""
    found = (
        row_model(schema.table("bc", "contacts"))
        .objects.using(rows.DB)
        .filter(company=company, number=number, type="Company")
        .values_list("displayName", flat=True)
        .first()
    )
    if found is None:
        raise _record_not_found("Contact", "No.", number)
    return found


def next_number(table: schema.Table, company: str) -> str:
    first, step = table.number_series
    prefix, digits = re.match(r"^(\D*)(\d+)$", first).groups()
    model = row_model(table)
    while True:
        n = rows.take_numbers(f"bc:{company}:{table.entity_set}")
        number = f"{prefix}{int(digits) + (n - 1) * step:0{len(digits)}d}"
        if not model.objects.using(rows.DB).filter(company=company, number=number).exists():
            return number


def _duplicate(table: schema.Table, key: str, value: str) -> ApiError:
    return ApiError(
        409,
        "Internal_EntityWithSameKeyExists",
        f"The record in table {table.caption} already exists. Identification fields and values: {key}='{value}'",
    )


def create_row(table: schema.Table, company: str, body: dict) -> str:
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest_InvalidRequestBody", "The request body must be a JSON object.")
    metering.count_written()
    values = apply_values(table, company, body, None)
    if table.number_field and not values.get(table.number_field):
        values[table.number_field] = next_number(table, company)
    model = row_model(table)
    for key in table.unique:
        if model.objects.using(rows.DB).filter(company=company, **{key: values.get(key, "")}).exists():
            raise _duplicate(table, key, values.get(key, ""))
    stamp = rows.now_ms()
    rid = str(uuid.uuid4())
    try:
        with transaction.atomic(using=rows.DB):
            model.objects.using(rows.DB).create(
                rid=rid, company=company, created_at=stamp, modified_at=stamp, version=1, etag=rows.bc_etag(), **values
            )
    except IntegrityError as exc:
        raise _duplicate(table, "key", str(exc)) from exc
    events.bc_changed(table, company, rid, "created", stamp)
    return rid


def update_row(table: schema.Table, company: str, record_id: str, body: dict, *, if_match: str | None) -> None:
    """PATCH semantics: `if_match` is the client's ETag (or "*"); None skips the check (out-of-band edits)."""
    metering.count_written()
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest_InvalidRequestBody", "The request body must be a JSON object.")
    model = row_model(table)
    current = model.objects.using(rows.DB).select_for_update().filter(company=company, rid=record_id).values().first()
    if current is None:
        raise not_found(table, record_id)
    _check_etag(current, if_match)
    values = apply_values(table, company, body, current)
    for key in table.unique:
        changed = key in values and values[key] != current[key]
        if changed and model.objects.using(rows.DB).filter(company=company, **{key: values[key]}).exists():
            raise _duplicate(table, key, values[key])
    stamp = rows.later_than(current["modified_at"])
    model.objects.using(rows.DB).filter(rid=record_id).update(
        modified_at=stamp, version=current["version"] + 1, etag=rows.bc_etag(), **values
    )
    events.bc_changed(table, company, record_id, "updated", stamp)


def _check_etag(current: dict, if_match: str | None) -> None:
    if if_match is None or if_match.strip() == "*":
        return
    if if_match.strip() != f'W/"{current["etag"]}"':
        raise ApiError(409, "Request_EntityChanged", "Another user has already changed the record.")


def delete_row(table: schema.Table, company: str, record_id: str, *, if_match: str | None) -> None:
    metering.count_written()
    model = row_model(table)
    current = model.objects.using(rows.DB).filter(company=company, rid=record_id).values("etag").first()
    if current is None:
        raise not_found(table, record_id)
    _check_etag(current, if_match)
    model.objects.using(rows.DB).filter(rid=record_id).delete()
    events.bc_changed(table, company, record_id, "deleted", rows.now_ms())


def _create(req: Req, table: schema.Table, company: Company) -> Resp:
    rid = create_row(table, company.rid, req.json())
    body = entity_body(req, table, company, rid)
    headers = {
        "ETag": body["@odata.etag"],
        "Location": f"{req.base_url}companies({company.rid})/{table.entity_set}({rid})",
    }
    if "return-no-content" in req.prefer():
        return Resp(204, b"", headers)
    return json_resp(201, body, headers)


def _update(req: Req, table: schema.Table, company: Company, record_id: str) -> Resp:
    if_match = req.header("if-match").strip()
    if not if_match:
        raise ApiError(
            400,
            "BadRequest_InvalidToken",
            "Could not validate the client concurrency token required by the service. "
            "Please provide a valid token in the client request.",
        )
    update_row(table, company.rid, record_id, req.json(), if_match=if_match)
    body = entity_body(req, table, company, record_id)
    return json_resp(200, body, {"ETag": body["@odata.etag"]})


def _delete(req: Req, table: schema.Table, company: Company, record_id: str) -> Resp:
    delete_row(table, company.rid, record_id, if_match=req.header("if-match").strip() or None)
    return Resp(204)


# --- JSON $batch ---------------------------------------------------------------------------------------------------


class _Rollback(Exception):
    pass


def batch(req: Req) -> Resp:
    """`{"requests": [...]}` -> `{"responses": [...]}`; `Isolation: snapshot` makes the whole batch one transaction."""
    payload = req.json()
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list):
        raise ApiError(400, "BadRequest", "The batch request body must be a JSON object with a 'requests' array.")
    if len(requests) > MAX_BATCH:
        raise ApiError(
            400, "BadRequest", f"The batch request has {len(requests)} operations; the maximum is {MAX_BATCH}."
        )
    snapshot = req.header("isolation").strip().lower() == "snapshot"
    responses = []
    failed = False
    try:
        with transaction.atomic(using=rows.DB):
            for item in requests:
                inner = _inner_request(req, item)
                response = _run_inner(inner) if isinstance(inner, Req) else inner
                responses.append(_batch_response(item, response))
                if response.status >= 400:
                    failed = True
            if snapshot and failed:
                raise _Rollback
    except _Rollback:
        pass  # the savepoint took the batch's changes and their notifications with it
    return json_resp(200, {"responses": responses})


def _run_inner(inner: Req) -> Resp:
    metering.count_inner_request()
    try:
        with transaction.atomic(using=rows.DB):
            return _dispatch(inner)
    except ApiError as err:
        return bc_error_response(err)


def _inner_request(outer: Req, item) -> Req | Resp:
    if not isinstance(item, dict) or "method" not in item or "url" not in item:
        return bc_error_response(ApiError(400, "BadRequest", "Each batch request needs 'method' and 'url'."))
    url = str(item["url"])
    route_prefix = f"/api/{outer.api_route}/"
    if url.startswith(("http://", "https://")):
        url = url[len(outer.base_url) :] if url.startswith(outer.base_url) else url.split(route_prefix, 1)[-1]
    url = url.lstrip("/")
    if url.startswith(route_prefix[1:]):
        url = url[len(route_prefix) - 1 :]
    path, _, raw_query = url.partition("?")
    headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
    body = item.get("body")
    return Req(
        method=str(item["method"]).upper(),
        path=path,
        query=parse_query(raw_query),
        raw_query=raw_query,
        headers=headers,
        body=dumps(body) if body is not None else b"",
        base_url=outer.base_url,
        client_id=outer.client_id,
        in_batch=True,
        api_route=outer.api_route,
    )


def _batch_response(item, response: Resp) -> dict:
    result = {"id": item.get("id") if isinstance(item, dict) else None, "status": response.status}
    headers = {k.lower(): v for k, v in response.headers.items()}
    if response.body:
        headers.setdefault("content-type", JSON_TYPE)
    result["headers"] = headers
    if response.body:
        try:
            result["body"] = json.loads(response.body)
        except ValueError:
            result["body"] = response.body.decode()
    return result
