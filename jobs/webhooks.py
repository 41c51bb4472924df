"""Webhook receivers: Business Central notifications and Dataverse webhooks become debounced syncs.

POST only, CSRF-exempt and without login: each request is authenticated by the secret of the subscription its URL
names (Business Central's clientState in every notification; the secret header of a Dataverse webhook), compared in
constant time. A receiver does bounded work: the body size and the number of notifications read are capped, and the
changes only go into the mapping's debounced set (jobs.scheduling.notifications), which queues one run per window.
"""

from __future__ import annotations

import hmac
import json
import logging
import re

from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors.choices import ConnectionKind
from jobs.models import SubscriptionStatus, WebhookSubscription
from jobs.scheduling.notifications import changes_notified
from jobs.scheduling.subscriptions import DATAVERSE_SECRET_HEADER
from mappings.choices import Direction
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # a full Business Central batch (<= 1,000 notifications) is well under this
MAX_NOTIFICATIONS = 1000  # Business Central sends `collection` above 1,000 changes; more is not a real batch
MAX_VALIDATION_TOKEN = 2048
# The record id at the end of a notification's resource: .../customers(130bbd17-...)
RESOURCE_ID = re.compile(r"\(([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\)\s*$")
DATAVERSE_MESSAGES = {"Create", "Update", "Delete"}


class Rejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@csrf_exempt
@require_POST
def business_central_receiver(request: HttpRequest, token) -> HttpResponse:
    subscription = _subscription(token, ConnectionKind.BUSINESS_CENTRAL)
    if subscription is None:
        return _error(404, "Unknown subscription.")
    validation_token = request.GET.get("validationToken")
    if validation_token is not None:
        # The handshake of a create or renewal, which Business Central sends to the URL we registered.
        if len(validation_token) > MAX_VALIDATION_TOKEN:
            return _error(400, "Validation token too long.")
        return HttpResponse(validation_token, content_type="text/plain; charset=utf-8")
    try:
        items = _json(request).get("value")
        if not isinstance(items, list):
            raise Rejected(400, "Expected a JSON object with a `value` list.")
        items = items[:MAX_NOTIFICATIONS]
        secret = subscription.secret.encode()
        for item in items:
            if not isinstance(item, dict) or not _same(item.get("clientState"), secret):
                raise Rejected(401, "Wrong or missing clientState.")
    except Rejected as exc:
        return _error(exc.status, str(exc))
    changed, collection, deleted = set(), False, False
    for item in items:
        change = item.get("changeType")
        if change == "collection":
            collection = True
        elif change in ("created", "updated"):
            match = RESOURCE_ID.search(str(item.get("resource") or ""))
            if match:
                changed.add(match.group(1).lower())
        elif change == "deleted":
            deleted = True
    _received(subscription)
    if deleted:
        # Business Central has no delta of deletions: the next run checks the mapping's coupled ids for existence
        # (jobs/engine/deletions.py) instead of waiting for the periodic check.
        TableMapping.objects.filter(pk=subscription.table_mapping_id).update(bc_deletion_check_due=True)
    changes_notified(
        mapping=subscription.table_mapping, direction=Direction.TO_DATAVERSE, record_ids=changed, collection=collection
    )
    return HttpResponse(status=202)


@csrf_exempt
@require_POST
def dataverse_receiver(request: HttpRequest, token) -> HttpResponse:
    subscription = _subscription(token, ConnectionKind.DATAVERSE)
    if subscription is None:
        return _error(404, "Unknown webhook.")
    if not _same(request.headers.get(DATAVERSE_SECRET_HEADER), subscription.secret.encode()):
        return _error(401, "Wrong or missing secret header.")
    try:
        context = _json(request)
    except Rejected as exc:
        return _error(exc.status, str(exc))
    message, record_id = context.get("MessageName"), str(context.get("PrimaryEntityId") or "")
    if message not in DATAVERSE_MESSAGES or not re.fullmatch(r"[0-9a-fA-F-]{36}", record_id):
        return _error(400, "Expected a RemoteExecutionContext of a Create, Update or Delete.")
    _received(subscription)
    if subscription.status != SubscriptionStatus.ACTIVE:
        # Registered by hand after a failed registration: Dataverse calling with the secret is the proof it works.
        WebhookSubscription.objects.filter(pk=subscription.pk).update(status=SubscriptionStatus.ACTIVE, last_error="")
    # A deletion only wakes the schedule (changes_notified with no ids): the run reads it from change tracking.
    changed = [] if message == "Delete" else [record_id.lower()]
    changes_notified(mapping=subscription.table_mapping, direction=Direction.FROM_DATAVERSE, record_ids=changed)
    return HttpResponse(status=202)


def _subscription(token, side: str) -> WebhookSubscription | None:
    return WebhookSubscription.objects.filter(token=token, side=side).select_related("table_mapping").first()


def _same(received, expected: bytes) -> bool:
    """Constant-time comparison, so the answer time tells nothing about how much of a guess was right."""
    if not isinstance(received, str) or not expected:
        return False
    return hmac.compare_digest(received.encode(), expected)


def _json(request: HttpRequest) -> dict:
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise Rejected(400, "Bad Content-Length.") from None
    if declared > MAX_BODY_BYTES:
        raise Rejected(413, f"Body larger than {MAX_BODY_BYTES} bytes.")
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise Rejected(413, f"Body larger than {MAX_BODY_BYTES} bytes.")
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "The body is not JSON.") from None
    except RecursionError:  # a megabyte of `[` parses as that many nested lists
        raise Rejected(400, "The body nests JSON too deeply.") from None
    if not isinstance(data, dict):
        raise Rejected(400, "Expected a JSON object.")
    return data


def _received(subscription: WebhookSubscription) -> None:
    WebhookSubscription.objects.filter(pk=subscription.pk).update(
        last_notification_at=timezone.now(), notifications_received=F("notifications_received") + 1
    )


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


app_name = "webhooks"
urlpatterns = [
    path("business-central/<uuid:token>/", business_central_receiver, name=ConnectionKind.BUSINESS_CENTRAL.value),
    path("dataverse/<uuid:token>/", dataverse_receiver, name=ConnectionKind.DATAVERSE.value),
]
