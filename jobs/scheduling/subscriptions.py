"""Webhook subscriptions: create, renew before expiry, delete; through the connectors' subscription functions.

Business Central subscriptions expire after 3 days; the scheduler tick queues a renewal as soon as one expires within
RENEW_WITHIN. A Dataverse webhook is a service endpoint with steps (registered over the Web API as the Plug-in
Registration Tool does) pointing at our receiver URL with a secret header; it does not expire. syncadmin keeps the
receiver's URL token and the encrypted secret of both.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

import django_rq
from django.urls import reverse
from django.utils import timezone

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from connectors.types import ConnectorError, ErrorKind
from connectors.webhooks import Subscription
from jobs.models import SubscriptionStatus, WebhookSubscription
from jobs.services import QUEUE
from mappings.companies import company_of
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

RENEW_WITHIN = timedelta(days=1)
RENEWAL_QUEUED_KEY = "syncadmin:webhook-renewal-queued"
# The header that carries the secret of a Dataverse webhook (its "HttpHeader" authentication).
DATAVERSE_SECRET_HEADER = "x-syncadmin-webhook-secret"  # noqa: S105 (a header name)


class SubscriptionNotCreated(Exception):
    """The subscription could not be created; the message says why (never the secret)."""


def subscription_create(
    *,
    mapping: TableMapping,
    side: str,
    notification_base_url: str,
    secret: str | None = None,
    register: bool = True,
) -> WebhookSubscription:
    """Create (or re-create) the change subscription of one mapping on one side.

    `notification_base_url` is how the remote system reaches this web process, e.g. https://syncadmin.example.
    Business Central: the subscription is created there now (it calls our receiver for the handshake first, so the
    row is saved before). Dataverse: the receiver endpoint with `secret` (generated if not given), registered in
    Dataverse as a webhook with the header DATAVERSE_SECRET_HEADER when `register`; if that registration fails (or
    `register` is off), an administrator registers it with the Plug-in Registration Tool and enters the secret here.
    """
    existing = WebhookSubscription.objects.filter(table_mapping=mapping, side=side).first()
    if existing is not None:
        subscription_delete(subscription=existing)
    subscription = WebhookSubscription(table_mapping=mapping, side=side)
    subscription.set_secret(secret or secrets.token_urlsafe(32))
    subscription.notification_url = notification_base_url.rstrip("/") + reverse(
        f"webhooks:{side}", args=[subscription.token]
    )
    if side == ConnectionKind.DATAVERSE:
        subscription.resource = mapping.dataverse_entity_set
        # Active once Dataverse has the endpoint and its steps; registered by hand, once the receiver exists (the
        # administrator enters the same secret in the Plug-in Registration Tool). Never active after a failure.
        subscription.status = SubscriptionStatus.PENDING if register else SubscriptionStatus.ACTIVE
        subscription.save()
        if register:
            _register_in_dataverse(subscription)
        return subscription
    subscription.resource = mapping.bc_entity_set
    subscription.save()  # committed before the handshake reaches the receiver (another request, maybe another process)
    try:
        with open_client(company_of(mapping)) as client:
            remote = client.subscription_create(
                entity_set=mapping.bc_entity_set,
                notification_url=subscription.notification_url,
                client_state=subscription.secret,
            )
    except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
        subscription.delete()
        raise SubscriptionNotCreated(f"Business Central did not create the subscription: {exc}") from exc
    _store_remote(subscription, remote, status=SubscriptionStatus.ACTIVE)
    return subscription


def subscription_renew(*, subscription: WebhookSubscription) -> WebhookSubscription:
    """Extend a Business Central subscription by another 3 days; re-create it if Business Central dropped it."""
    if subscription.side != ConnectionKind.BUSINESS_CENTRAL:
        return subscription
    remote = Subscription(
        id=subscription.remote_id,
        resource="",
        notification_url=subscription.notification_url,
        etag=subscription.etag or None,
        client_state=subscription.secret,
    )
    try:
        with open_client(company_of(subscription.table_mapping)) as client:
            remote.resource = client.subscription_resource(subscription.resource)
            try:
                renewed = client.subscription_renew(remote)
            except ConnectorError as exc:
                if exc.kind != ErrorKind.NOT_FOUND:
                    raise
                # Business Central deletes a subscription whose receiver failed: subscribe again, same URL and secret.
                renewed = client.subscription_create(
                    entity_set=subscription.resource,
                    notification_url=subscription.notification_url,
                    client_state=subscription.secret,
                )
    except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
        WebhookSubscription.objects.filter(pk=subscription.pk).update(
            status=SubscriptionStatus.FAILED, last_error=f"Renewal failed: {exc}"[:2000]
        )
        raise
    _store_remote(subscription, renewed, status=SubscriptionStatus.ACTIVE)
    subscription.renewed_at = timezone.now()
    subscription.save(update_fields=["renewed_at"])
    return subscription


def subscriptions_renew_due(*, now: datetime | None = None) -> int:
    """Renew every Business Central subscription that expires within RENEW_WITHIN; return how many were renewed."""
    django_rq.get_connection(QUEUE).delete(RENEWAL_QUEUED_KEY)
    renewed = 0
    for subscription in _due_for_renewal(now or timezone.now()):
        try:
            subscription_renew(subscription=subscription)
            renewed += 1
        except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
            logger.warning("Could not renew the %s subscription: %s", subscription.table_mapping.name, exc)
    return renewed


def subscriptions_queue_renewal(*, now: datetime | None = None) -> bool:
    """Called by every scheduler tick: queue one renewal job when a subscription is due (at most one queued)."""
    if not _due_for_renewal(now or timezone.now()).exists():
        return False
    if not django_rq.get_connection(QUEUE).set(RENEWAL_QUEUED_KEY, 1, nx=True, ex=3600):
        return False
    django_rq.get_queue(QUEUE, commit_mode="auto").enqueue(
        "jobs.scheduling.tasks.renew_webhook_subscriptions", job_timeout=600
    )
    return True


def subscription_delete(*, subscription: WebhookSubscription) -> None:
    """Delete the subscription in Business Central (if it still exists there) and here."""
    if subscription.side == ConnectionKind.BUSINESS_CENTRAL and subscription.remote_id:
        remote = Subscription(
            id=subscription.remote_id, resource="", notification_url="", etag=subscription.etag or None
        )
        try:
            with open_client(company_of(subscription.table_mapping)) as client:
                client.subscription_delete(remote)
        except ConnectorError as exc:
            if exc.kind != ErrorKind.NOT_FOUND:
                raise
        except (Connection.DoesNotExist, Connection.MultipleObjectsReturned):
            logger.warning("No Business Central connection: subscription %s deleted here only.", subscription.pk)
    if subscription.side == ConnectionKind.DATAVERSE and subscription.remote_id:
        try:
            _unregister_in_dataverse(subscription)
        except ConnectorError as exc:
            if exc.kind != ErrorKind.NOT_FOUND:
                raise
        except (Connection.DoesNotExist, Connection.MultipleObjectsReturned):
            logger.warning("No Dataverse connection: webhook %s deleted here only.", subscription.pk)
    subscription.delete()


def _register_in_dataverse(subscription: WebhookSubscription) -> None:
    try:
        with open_client(Connection.objects.active(ConnectionKind.DATAVERSE)) as client:
            webhook = client.webhook_create(
                entity_set=subscription.resource,
                url=subscription.notification_url,
                header_name=DATAVERSE_SECRET_HEADER,
                header_value=subscription.secret,
            )
    except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
        reason = exc.message if isinstance(exc, ConnectorError) else "no single enabled Dataverse connection"
        subscription.status = SubscriptionStatus.FAILED
        subscription.last_error = (
            f"Not registered in Dataverse: {reason}. Register the endpoint URL there with the Plug-in Registration "
            f"Tool (HttpHeader authentication, header {DATAVERSE_SECRET_HEADER}), then set the same secret here."
        )[:2000]
        subscription.save(update_fields=["status", "last_error"])
        return
    subscription.remote_id = webhook.endpoint_id
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.last_error = ""
    subscription.save(update_fields=["remote_id", "status", "last_error"])


def _unregister_in_dataverse(subscription: WebhookSubscription) -> None:
    with open_client(Connection.objects.active(ConnectionKind.DATAVERSE)) as client:
        for webhook in client.webhooks():
            if webhook.endpoint_id == subscription.remote_id:
                client.webhook_delete(webhook)


def _due_for_renewal(now: datetime):
    return WebhookSubscription.objects.filter(
        side=ConnectionKind.BUSINESS_CENTRAL, expires_at__lte=now + RENEW_WITHIN
    ).select_related("table_mapping")


def _store_remote(subscription: WebhookSubscription, remote: Subscription, *, status: str) -> None:
    subscription.remote_id = remote.id
    subscription.etag = remote.etag or ""
    subscription.expires_at = remote.expires_at
    subscription.status = status
    subscription.last_error = ""
    subscription.save(update_fields=["remote_id", "etag", "expires_at", "status", "last_error"])
