"""Dataverse webhook registration over the Web API, as the Plug-in Registration Tool does it.

Four entity sets, with the shapes Microsoft documents
(https://learn.microsoft.com/power-apps/developer/data-platform/register-web-hooks,
https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks):

- `sdkmessages`: the messages (Create, Update, Delete), read by `name eq '...'`;
- `sdkmessagefilters`: a message on one table, read by `_sdkmessageid_value eq <id> and primaryobjecttypecode eq '...'`;
- `serviceendpoints`: contract 8 (Webhook) with `url`, `authtype` (4 WebhookKey, 5 HttpHeader, 6 HttpQueryString)
  and `authvalue` (a key, or `<settings><setting name=".." value=".." /></settings>`);
- `sdkmessageprocessingsteps`: a step binding a message filter to an endpoint (`eventhandler_serviceendpoint`),
  asynchronous steps only in the PostOperation stage (40).

From then on each Create, Update or Delete of a row of that table posts the RemoteExecutionContext to the endpoint's
URL with its authentication (sandbox/events.py, sandbox/webhooks.py). Other queries of these sets are refused.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET

from sandbox import rows, schema
from sandbox.models import DvServiceEndpoint, DvStep
from sandbox.wire import ApiError, Req, Resp, json_resp

ENTITY_SETS = ("sdkmessages", "sdkmessagefilters", "serviceendpoints", "sdkmessageprocessingsteps")
MESSAGES = ("Create", "Update", "Delete")
CONTRACT_WEBHOOK = 8
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY_STRING = 4, 5, 6
MODE_SYNCHRONOUS, MODE_ASYNCHRONOUS = 0, 1
STAGES = {10: "PreValidation", 20: "PreOperation", 40: "PostOperation"}
_NAMESPACE = uuid.UUID("6f1b7c3a-2d4e-4f5a-9b8c-1a2b3c4d5e6f")
GUID = r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"


def message_id(message: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"sdkmessage:{message}"))


def filter_id(message: str, logical_name: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"sdkmessagefilter:{message}:{logical_name}"))


def _filters() -> dict[str, tuple[str, schema.Table]]:
    return {filter_id(m, t.logical_name): (m, t) for m in MESSAGES for t in schema.DATAVERSE_TABLES}


def _bad(message: str) -> ApiError:
    return ApiError(400, "0x80040203", message)


def handle(req: Req, entity_set: str, key: str | None) -> Resp:
    if key is not None:
        key = key.strip().strip("'").lower()
    if entity_set == "sdkmessages":
        return _read_only(req, key, _messages(req))
    if entity_set == "sdkmessagefilters":
        return _read_only(req, key, _message_filters(req))
    if entity_set == "serviceendpoints":
        return _endpoints(req, key)
    return _steps(req, key)


def _read_only(req: Req, key: str | None, found: list[dict]) -> Resp:
    if req.method != "GET" or key is not None:
        raise ApiError(405, "0x80060888", "The requested HTTP method is not allowed on this resource.")
    return json_resp(200, {"value": found})


def _messages(req: Req) -> list[dict]:
    match = re.fullmatch(r"\s*name eq '(\w+)'\s*", req.query.get("$filter", ""))
    if not match:
        raise _bad("sdkmessages: filter by name, e.g. name eq 'Create'.")
    name = match.group(1)
    return [{"sdkmessageid": message_id(name), "name": name}] if name in MESSAGES else []


def _message_filters(req: Req) -> list[dict]:
    match = re.fullmatch(
        rf"\s*_sdkmessageid_value eq {GUID} and primaryobjecttypecode eq '(\w+)'\s*", req.query.get("$filter", "")
    )
    if not match:
        raise _bad("sdkmessagefilters: filter by _sdkmessageid_value and primaryobjecttypecode.")
    wanted_message, logical_name = match.group(1).lower(), match.group(2)
    message = next((m for m in MESSAGES if message_id(m) == wanted_message), None)
    table = next((t for t in schema.DATAVERSE_TABLES if t.logical_name == logical_name), None)
    if message is None or table is None:
        return []
    return [{"sdkmessagefilterid": filter_id(message, logical_name), "primaryobjecttypecode": logical_name}]


def auth_of(endpoint: DvServiceEndpoint) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, query parameters) a delivery to the endpoint carries, from its authtype and authvalue."""
    if endpoint.authtype == AUTH_WEBHOOK_KEY:
        return {}, {"code": endpoint.authvalue}
    pairs = _settings(endpoint.authvalue)
    return (pairs, {}) if endpoint.authtype == AUTH_HTTP_HEADER else ({}, pairs)


def _settings(authvalue: str) -> dict[str, str]:
    """`<settings><setting name="x" value="y" /></settings>` -> {"x": "y"}; raises ValueError when not that shape."""
    root = ET.fromstring(authvalue)  # noqa: S314 - the sandbox parses what its own tests and admins send
    if root.tag != "settings":
        raise ValueError("the root element is not <settings>")
    pairs = {item.get("name") or "": item.get("value") or "" for item in root.findall("setting")}
    if not pairs or "" in pairs:
        raise ValueError("each <setting> needs a name")
    return pairs


def _endpoint_json(endpoint: DvServiceEndpoint) -> dict:
    # authvalue is write-only in Dataverse: it is never read back.
    return {
        "serviceendpointid": endpoint.rid,
        "name": endpoint.name,
        "url": endpoint.url,
        "contract": endpoint.contract,
        "authtype": endpoint.authtype,
    }


def _endpoints(req: Req, key: str | None) -> Resp:
    endpoints = DvServiceEndpoint.objects.using(rows.DB)
    if key is None and req.method == "GET":
        flt = req.query.get("$filter", "")
        if flt and not re.fullmatch(r"\s*contract eq \d+\s*", flt):
            raise _bad("serviceendpoints: filter by contract, e.g. contract eq 8.")
        found = endpoints.filter(contract=int(flt.split()[-1])) if flt else endpoints.all()
        return json_resp(200, {"value": [_endpoint_json(e) for e in found.order_by("created_at")]})
    if key is None and req.method == "POST":
        body = req.json()
        name, url = str(body.get("name") or "").strip(), str(body.get("url") or "").strip()
        contract, authtype, authvalue = body.get("contract"), body.get("authtype"), str(body.get("authvalue") or "")
        if not name:
            raise _bad("A service endpoint needs a name.")
        if contract != CONTRACT_WEBHOOK:
            raise _bad(f"Only webhook service endpoints (contract {CONTRACT_WEBHOOK}) are emulated.")
        if not re.match(r"https?://", url):
            raise _bad("A webhook needs the absolute URL of its endpoint (url).")
        if authtype not in (AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY_STRING):
            raise _bad("A webhook's authtype is WebhookKey (4), HttpHeader (5) or HttpQueryString (6).")
        if not authvalue:
            raise _bad("A webhook needs its authentication value (authvalue).")
        if authtype != AUTH_WEBHOOK_KEY:
            try:
                _settings(authvalue)
            except (ET.ParseError, ValueError) as exc:
                raise _bad(
                    'authvalue must be <settings><setting name="..." value="..." /></settings> for HttpHeader and '
                    f"HttpQueryString authentication: {exc}."
                ) from exc
        endpoint = endpoints.create(
            rid=str(uuid.uuid4()),
            name=name,
            url=url,
            contract=contract,
            authtype=authtype,
            authvalue=authvalue,
            created_at=rows.now_ms(),
        )
        return json_resp(
            201, _endpoint_json(endpoint), {"OData-EntityId": f"{req.base_url}serviceendpoints({endpoint.rid})"}
        )
    endpoint = endpoints.filter(rid=key).first() if key else None
    if endpoint is None:
        raise ApiError(404, "0x80040217", f"serviceendpoint With Id = {key} Does Not Exist")
    if req.method == "GET":
        return json_resp(200, _endpoint_json(endpoint))
    if req.method == "DELETE":
        if endpoint.steps.exists():
            raise _bad("The service endpoint is used by steps: delete its steps first.")
        endpoint.delete()
        return Resp(204)
    raise ApiError(405, "0x80060888", "The requested HTTP method is not allowed on this resource.")


def _step_json(step: DvStep) -> dict:
    return {
        "sdkmessageprocessingstepid": step.rid,
        "name": step.name,
        "mode": step.mode,
        "stage": step.stage,
        "rank": step.rank,
        "_eventhandler_value": step.endpoint_id,
        "_sdkmessageid_value": message_id(step.message),
        "_sdkmessagefilterid_value": filter_id(step.message, schema.table("dataverse", step.entity_set).logical_name),
    }


def _bound(body: dict, name: str, entity_set: str) -> str:
    match = re.fullmatch(rf"/?{entity_set}\({GUID}\)", str(body.get(f"{name}@odata.bind") or ""))
    if not match:
        raise _bad(f"A step needs {name}@odata.bind: /{entity_set}(<id>).")
    return match.group(1).lower()


def _steps(req: Req, key: str | None) -> Resp:
    steps = DvStep.objects.using(rows.DB)
    if key is None and req.method == "GET":
        match = re.fullmatch(rf"\s*_eventhandler_value eq {GUID}\s*", req.query.get("$filter", ""))
        if not match:
            raise _bad("sdkmessageprocessingsteps: filter by _eventhandler_value.")
        found = steps.filter(endpoint_id=match.group(1).lower()).order_by("name")
        return json_resp(200, {"value": [_step_json(s) for s in found]})
    if key is None and req.method == "POST":
        body = req.json()
        endpoint_id = _bound(body, "eventhandler_serviceendpoint", "serviceendpoints")
        message_filter = _filters().get(_bound(body, "sdkmessagefilterid", "sdkmessagefilters"))
        wanted_message = _bound(body, "sdkmessageid", "sdkmessages")
        endpoint = DvServiceEndpoint.objects.using(rows.DB).filter(rid=endpoint_id).first()
        if endpoint is None:
            raise ApiError(404, "0x80040217", f"serviceendpoint With Id = {endpoint_id} Does Not Exist")
        if message_filter is None or message_id(message_filter[0]) != wanted_message:
            raise _bad("The message filter does not exist or belongs to another message.")
        mode, stage = body.get("mode"), body.get("stage")
        if mode not in (MODE_SYNCHRONOUS, MODE_ASYNCHRONOUS) or stage not in STAGES:
            raise _bad("A step's mode is 0 (synchronous) or 1 (asynchronous); its stage 10, 20 or 40.")
        if mode == MODE_ASYNCHRONOUS and stage != 40:
            raise _bad("Asynchronous steps can only be registered in the PostOperation stage (40).")
        message, table = message_filter
        step = steps.create(
            rid=str(uuid.uuid4()),
            name=str(body.get("name") or f"{endpoint.name}: {message} of {table.logical_name}"),
            endpoint=endpoint,
            message=message,
            entity_set=table.entity_set,
            mode=mode,
            stage=stage,
            rank=int(body.get("rank") or 1),
        )
        return json_resp(
            201, _step_json(step), {"OData-EntityId": f"{req.base_url}sdkmessageprocessingsteps({step.rid})"}
        )
    step = steps.filter(rid=key).first() if key else None
    if step is None:
        raise ApiError(404, "0x80040217", f"sdkmessageprocessingstep With Id = {key} Does Not Exist")
    if req.method == "GET":
        return json_resp(200, _step_json(step))
    if req.method == "DELETE":
        step.delete()
        return Resp(204)
    raise ApiError(405, "0x80060888", "The requested HTTP method is not allowed on this resource.")
