"""Outgoing webhooks of both emulated services, delivered for real over HTTP.

Business Central: subscriptions (`api/v2.0/subscriptions`) with the `validationToken` handshake, 3-day expiry, renewal
(PATCH, handshake again), `clientState`, coalesced notifications (`collection` above a threshold), retries only on
408/429/5xx, any other answer deletes the subscription. Dataverse: registered endpoints (`DvWebhook`) with a secret
header receive a `RemoteExecutionContext` per Create/Update/Delete; only 502/503/504 are retried, once.

Delivery runs in a daemon thread of whichever process made the change, after the coalescing delay.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from django.db import close_old_connections, transaction

from sandbox import companies, odata, plugin_registration, rows, schema
from sandbox.models import BcSubscription, DvStep, DvWebhook, Notification
from sandbox.wire import ApiError, Req, Resp, bc_method_not_allowed, json_resp

EXPIRY = timedelta(days=3)
MAX_SUBSCRIPTIONS = 200
HANDSHAKE_TIMEOUT = 5.0
DELIVERY_TIMEOUT = 10.0
BC_RETRY_SECONDS = 60.0
BC_RETRY_HOURS = 36

# Tests may point deliveries at an in-process app; None means real sockets.
transport: httpx.BaseTransport | None = None
# Tests that call deliver_due() themselves switch the background thread off.
AUTO_DELIVER = True


def _client() -> httpx.Client:
    return httpx.Client(transport=transport, timeout=DELIVERY_TIMEOUT)


# --- Dataverse RemoteExecutionContext ---------------------------------------------------------------------------


def _wcf_date(stamp: str) -> str:
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return f"/Date({int(moment.timestamp() * 1000)})/"


def _reference(logical_name: str, rid: str) -> dict:
    return {
        "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Id": rid,
        "KeyAttributes": [],
        "LogicalName": logical_name,
        "Name": None,
        "RowVersion": None,
    }


def execution_context(table: schema.Table, message: str, rid: str, values: dict, actor: str | None, stamp: str) -> dict:
    """The documented RemoteExecutionContext JSON for one Create/Update/Delete (PostOperation, asynchronous)."""
    attributes = []
    for name, value in values.items():
        column = next((c for c in table.columns if table.storage(c) == name), None)
        if column is None or name == "rid":
            continue
        if column.kind == "lookup":
            target = values.get("parentcustomeridtype") if column.name == "parentcustomerid" else None
            target = target or schema.table("dataverse", column.targets[0]).logical_name
            value = _reference(target, value) if value else None
        elif column.kind == "choice" and value is not None:
            value = {"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": value}
        elif column.kind == "money" and value is not None:
            value = {"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": value}
        attributes.append({"key": column.name, "value": value})
    user = actor or schema.ZERO_GUID
    if message != "Delete":
        attributes += [
            {"key": "modifiedon", "value": _wcf_date(stamp)},
            {"key": "modifiedby", "value": _reference("systemuser", user)},
            {"key": table.primary_key, "value": rid},
        ]
    if message == "Delete":
        target = _reference(table.logical_name, rid)
    else:
        target = {
            "__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Attributes": attributes,
            "EntityState": None,
            "FormattedValues": [],
            "Id": rid,
            "KeyAttributes": [],
            "LogicalName": table.logical_name,
            "RelatedEntities": [],
            "RowVersion": None,
        }
    correlation = str(uuid.uuid4())
    return {
        "BusinessUnitId": schema.BUSINESS_UNIT_ID,
        "CorrelationId": correlation,
        "Depth": 1,
        "InitiatingUserAzureActiveDirectoryObjectId": schema.ZERO_GUID,
        "InitiatingUserId": user,
        "InputParameters": [{"key": "Target", "value": target}],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message,
        "Mode": 1,
        "OperationCreatedOn": _wcf_date(stamp),
        "OperationId": str(uuid.uuid4()),
        "OrganizationId": schema.ORGANIZATION_ID,
        "OrganizationName": "sandbox",
        "OutputParameters": [{"key": "id", "value": rid}] if message == "Create" else [],
        "OwningExtension": {"Id": str(uuid.uuid4()), "LogicalName": "sdkmessageprocessingstep", "Name": None},
        "ParentContext": None,
        "PostEntityImages": [],
        "PreEntityImages": [],
        "PrimaryEntityId": rid,
        "PrimaryEntityName": table.logical_name,
        "RequestId": str(uuid.uuid4()),
        "SecondaryEntityName": "none",
        "SharedVariables": [],
        "Stage": 40,
        "UserAzureActiveDirectoryObjectId": schema.ZERO_GUID,
        "UserId": user,
    }


def register_dataverse_webhook(
    *, url: str, entity_set: str, messages=("Create", "Update", "Delete"), header_name: str = "", header_value: str = ""
) -> int:
    if schema.table("dataverse", entity_set) is None:
        raise ValueError(f"unknown Dataverse entity set {entity_set}")
    hook = DvWebhook.objects.using(rows.DB).create(
        name=f"webhook {entity_set}",
        url=url,
        entity_set=entity_set,
        messages=list(messages),
        header_name=header_name,
        header_value=header_value,
    )
    return hook.id


# --- Business Central subscriptions ------------------------------------------------------------------------------


def _subscription_json(req: Req, sub: BcSubscription) -> dict:
    return {
        "@odata.etag": f'W/"{_sub_etag(sub)}"',
        "subscriptionId": sub.subscription_id,
        "notificationUrl": sub.notification_url,
        "resource": sub.resource,
        "timestamp": sub.version,
        "userId": sub.user_id,
        "lastModifiedDateTime": sub.modified_at,
        "clientState": sub.client_state,
        "expirationDateTime": sub.expires_at,
        "systemCreatedAt": sub.created_at,
        "systemCreatedBy": sub.user_id,
        "systemModifiedAt": sub.modified_at,
        "systemModifiedBy": sub.user_id,
    }


def _sub_etag(sub: BcSubscription) -> str:
    return base64.b64encode(f"'{sub.subscription_id[:8]};{sub.version};00;'".encode()).decode()


def _parse_resource(resource: str) -> tuple[str, str]:
    """`/api/v2.0/companies(<id>)/customers` -> (company id, entity set); only webhook-capable sets."""
    m = re.fullmatch(r"/?(?:api/v2\.0/)?companies\(([0-9a-fA-F-]{36})\)/(\w+)", resource.strip())
    if not m:
        raise ApiError(
            400, "BadRequest_ResourceNotFound", f"The resource '{resource}' is not valid for a subscription."
        )
    company, entity_set = m.group(1).lower(), m.group(2)
    table = schema.table("bc", entity_set)
    if table is None or not table.webhooks:
        raise ApiError(400, "BadRequest_ResourceNotFound", f"The resource '{entity_set}' does not support webhooks.")
    companies.company(company)
    return company, entity_set


def _handshake(url: str) -> None:
    """BC posts `?validationToken=` to the receiver, which must answer 200 with the token as the body."""
    token = str(uuid.uuid4())
    try:
        with httpx.Client(transport=transport, timeout=HANDSHAKE_TIMEOUT) as client:
            response = client.post(url, params={"validationToken": token})
    except httpx.HTTPError as exc:
        raise ApiError(400, "BadRequest", f"The subscription was not validated: {type(exc).__name__}.") from exc
    if response.status_code != 200 or response.text.strip().strip('"') != token:
        raise ApiError(
            400, "BadRequest", f"The subscription was not validated: the endpoint answered {response.status_code}."
        )


def bc_subscriptions(req: Req, subscription_id: str | None) -> Resp:
    base = f"{req.base_url}$metadata#subscriptions"
    subs = BcSubscription.objects.using(rows.DB)
    if subscription_id is None:
        if req.method == "GET":
            value = [_subscription_json(req, s) for s in subs.order_by("id")]
            return json_resp(200, {"@odata.context": base, "value": value})
        if req.method != "POST":
            raise bc_method_not_allowed()
        body = req.json()
        url, resource = body.get("notificationUrl"), body.get("resource")
        if not url or not resource:
            raise ApiError(400, "BadRequest_RequiredParamNotProvided", "notificationUrl and resource are required.")
        client_state = str(body.get("clientState") or "")
        if len(client_state) > 2048:
            raise ApiError(400, "Application_StringExceededLength", "clientState must be at most 2048 characters.")
        company, entity_set = _parse_resource(resource)
        if subs.count() >= MAX_SUBSCRIPTIONS:
            raise ApiError(400, "BadRequest", f"The maximum of {MAX_SUBSCRIPTIONS} subscriptions has been reached.")
        _handshake(url)
        stamp = rows.now_ms()
        sub = subs.create(
            subscription_id=uuid.uuid4().hex,
            notification_url=url,
            resource=resource,
            company=company,
            entity_set=entity_set,
            client_state=client_state,
            user_id=schema.ZERO_GUID,
            expires_at=odata.iso_ms(rows.clock_now() + EXPIRY)[:19] + "Z",
            created_at=stamp,
            modified_at=stamp,
        )
        return json_resp(201, {"@odata.context": f"{base}/$entity", **_subscription_json(req, sub)})
    sub = subs.filter(subscription_id=subscription_id).first()
    if sub is None:
        raise ApiError(404, "BadRequest_NotFound", f"The subscription '{subscription_id}' does not exist.")
    if req.method == "GET":
        return json_resp(200, {"@odata.context": f"{base}/$entity", **_subscription_json(req, sub)})
    if_match = req.header("if-match").strip()
    if req.method in ("PATCH", "DELETE"):
        if not if_match:
            raise ApiError(
                400,
                "BadRequest_InvalidToken",
                "Could not validate the client concurrency token required by the service. "
                "Please provide a valid token in the client request.",
            )
        if if_match != "*" and if_match != f'W/"{_sub_etag(sub)}"':
            raise ApiError(409, "Request_EntityChanged", "Another user has already changed the record.")
    if req.method == "DELETE":
        sub.delete()
        return Resp(204)
    if req.method == "PATCH":
        body = req.json()
        if "resource" in body and body["resource"] != sub.resource:
            sub.company, sub.entity_set = _parse_resource(body["resource"])
            sub.resource = body["resource"]
        sub.notification_url = body.get("notificationUrl", sub.notification_url)
        sub.client_state = str(body.get("clientState", sub.client_state) or "")
        _handshake(sub.notification_url)
        sub.expires_at = odata.iso_ms(rows.clock_now() + EXPIRY)[:19] + "Z"
        sub.modified_at = rows.now_ms()
        sub.version += 1
        sub.save(using=rows.DB)
        return json_resp(200, {"@odata.context": f"{base}/$entity", **_subscription_json(req, sub)})
    raise bc_method_not_allowed()


# --- delivery ------------------------------------------------------------------------------------------------------

_wake = threading.Event()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def wake_deliverer() -> None:
    """Called after a commit that queued notifications: make sure this process has a delivery thread."""
    global _thread
    if not AUTO_DELIVER:
        return
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_deliver_forever, name="sandbox-webhooks", daemon=True)
            _thread.start()
    _wake.set()


def _deliver_forever() -> None:
    while True:
        _wake.clear()
        try:
            wait = deliver_due()
        except Exception:  # noqa: BLE001 - a delivery thread must survive a bad row or a closed database
            wait = 1.0
        finally:
            close_old_connections()
        _wake.wait(timeout=wait)


def deliver_due(now: float | None = None) -> float:
    """Deliver every notification that is due; returns seconds until the next one (capped)."""
    now = time.time() if now is None else now
    with transaction.atomic(using=rows.DB):
        due = list(Notification.objects.using(rows.DB).filter(due_at__lte=now).order_by("id"))
        Notification.objects.using(rows.DB).filter(id__in=[n.id for n in due]).delete()
    bc_due = [n for n in due if n.service == "bc"]
    if bc_due:
        _deliver_bc(bc_due)
    for note in (n for n in due if n.service == "dataverse"):
        _deliver_dataverse(note)
    following = Notification.objects.using(rows.DB).order_by("due_at").values_list("due_at", flat=True).first()
    return 5.0 if following is None else max(0.01, min(5.0, following - time.time()))


def _deliver_bc(notes: list[Notification]) -> None:
    by_sub: dict[str, list[Notification]] = {}
    for note in notes:
        by_sub.setdefault(note.target, []).append(note)
    threshold = int(rows.get_setting("bc_webhook_collection_threshold"))
    for subscription_id, changes in by_sub.items():
        sub = BcSubscription.objects.using(rows.DB).filter(subscription_id=subscription_id).first()
        if sub is None:
            continue
        if len(changes) > threshold:
            first = min(c.payload["at"] for c in changes)
            items = [
                {
                    "subscriptionId": sub.subscription_id,
                    "clientState": sub.client_state,
                    "expirationDateTime": sub.expires_at,
                    "resource": f"{sub.resource}?$filter=lastModifiedDateTime%20gt%20{first}",
                    "changeType": "collection",
                    "lastModifiedDateTime": max(c.payload["at"] for c in changes),
                }
            ]
        else:
            items = [
                {
                    "subscriptionId": sub.subscription_id,
                    "clientState": sub.client_state,
                    "expirationDateTime": sub.expires_at,
                    "resource": c.payload["resource"],
                    "changeType": c.payload["changeType"],
                    "lastModifiedDateTime": c.payload["at"],
                }
                for c in changes
            ]
        status = _post(sub.notification_url, {"value": items}, {})
        if 200 <= status < 300:
            continue
        if status in (408, 429) or status >= 500 or status == 0:
            attempts = max(c.attempts for c in changes) + 1
            if attempts * BC_RETRY_SECONDS > BC_RETRY_HOURS * 3600:
                continue  # BC gives up on a notification after 36 hours of retries
            Notification.objects.using(rows.DB).bulk_create(
                Notification(
                    service="bc",
                    target=c.target,
                    payload=c.payload,
                    due_at=time.time() + BC_RETRY_SECONDS,
                    attempts=attempts,
                )
                for c in changes
            )
        else:
            sub.delete()  # BC drops a subscription whose endpoint answers anything else


def _deliver_dataverse(note: Notification) -> None:
    context = note.payload
    headers = {
        "x-ms-dynamics-organization": "sandbox",
        "x-ms-dynamics-entity-name": context["PrimaryEntityName"],
        "x-ms-dynamics-request-name": context["MessageName"],
        "x-ms-correlation-request-id": context["CorrelationId"],
    }
    params: dict[str, str] = {}
    if note.target.startswith("step:"):
        step = DvStep.objects.using(rows.DB).select_related("endpoint").filter(rid=note.target[5:]).first()
        if step is None:
            return
        url = step.endpoint.url
        auth_headers, params = plugin_registration.auth_of(step.endpoint)
        headers.update(auth_headers)
        context = {**context, "OwningExtension": {**context["OwningExtension"], "Id": step.rid, "Name": step.name}}
    else:
        hook = DvWebhook.objects.using(rows.DB).filter(id=int(note.target)).first()
        if hook is None:
            return
        url = hook.url
        if hook.header_name:
            headers[hook.header_name] = hook.header_value
    status = _post(url, context, headers, params)
    if status in (502, 503, 504) and note.attempts == 0:
        Notification.objects.using(rows.DB).create(
            service="dataverse", target=note.target, payload=context, due_at=time.time() + 1, attempts=1
        )


def _post(url: str, payload: dict, headers: dict, params: dict | None = None) -> int:
    try:
        with _client() as client:
            response = client.post(
                url,
                content=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json", **headers},
                params=params or None,
            )
        return response.status_code
    except httpx.HTTPError:
        return 0
