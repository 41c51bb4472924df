"""Webhook subscription management: Business Central `subscriptions`; Dataverse service endpoints and steps.

Business Central: POST `subscriptions` (the service calls our notification URL with `?validationToken=` first),
expiry after 3 days, renewal by PATCH with If-Match (handshake again), DELETE with If-Match.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from connectors.base import ODataClient
from connectors.bc_routes import split_route
from connectors.odata import parse_datetime, string_literal
from connectors.types import ConnectorError, EntityNames, ErrorKind


@dataclass
class Subscription:
    id: str
    resource: str
    notification_url: str
    expires_at: datetime | None = None
    etag: str | None = None
    client_state: str = field(default="", repr=False)  # a shared secret: never in repr or logs
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_bc(cls, row: dict[str, Any]) -> Subscription:
        return cls(
            id=str(row.get("subscriptionId") or ""),
            resource=str(row.get("resource") or ""),
            notification_url=str(row.get("notificationUrl") or ""),
            expires_at=parse_datetime(row.get("expirationDateTime")),
            etag=row.get("@odata.etag"),
            client_state=str(row.get("clientState") or ""),
            raw=row,
        )


class BusinessCentralSubscriptions(ODataClient):
    """The subscription calls of BusinessCentralClient, which sets `company_id`."""

    company_id: UUID | None

    def subscription_resource(self, entity_set: str) -> str:
        route, name = split_route(entity_set)
        return f"/api/{route}/companies({self.company_id})/{name}"

    def subscriptions(self) -> list[Subscription]:
        body = self.request("GET", "subscriptions", kind="webhook").json()
        return [Subscription.from_bc(row) for row in body.get("value", [])]

    def subscription_create(self, *, entity_set: str, notification_url: str, client_state: str = "") -> Subscription:
        """Subscribe to changes of one entity set; the service validates `notification_url` before answering."""
        payload = {"notificationUrl": notification_url, "resource": self.subscription_resource(entity_set)}
        if client_state:
            payload["clientState"] = client_state
        row = self.request("POST", "subscriptions", kind="webhook", json=payload).json()
        return Subscription.from_bc(row)

    def subscription_renew(self, subscription: Subscription) -> Subscription:
        """Extend a subscription by another 3 days (the service repeats the validation handshake)."""
        payload = {"notificationUrl": subscription.notification_url, "resource": subscription.resource}
        if subscription.client_state:
            payload["clientState"] = subscription.client_state
        row = self.request(
            "PATCH",
            f"subscriptions({string_literal(subscription.id)})",
            kind="webhook",
            json=payload,
            headers={"If-Match": subscription.etag or "*"},
            idempotent=True,
        ).json()
        return Subscription.from_bc(row)

    def subscription_delete(self, subscription: Subscription) -> None:
        self.request(
            "DELETE",
            f"subscriptions({string_literal(subscription.id)})",
            kind="webhook",
            headers={"If-Match": subscription.etag or "*"},
            idempotent=True,
        )


# Dataverse service endpoint and step constants (serviceendpoint.contract, .authtype; step mode and stage).
WEBHOOK_CONTRACT = 8
AUTH_HTTP_HEADER = 5
STEP_ASYNCHRONOUS = 1
STAGE_POST_OPERATION = 40
MESSAGES = ("Create", "Update", "Delete")


@dataclass
class DataverseWebhook:
    """A registered endpoint (`serviceendpoint`, contract Webhook) and its steps (one per message)."""

    endpoint_id: str
    name: str
    url: str
    step_ids: dict[str, str] = field(default_factory=dict)  # message name -> sdkmessageprocessingstepid


class DataverseWebhooks(ODataClient):
    """The webhook calls of DataverseClient, which provides `names`.

    Registered as the Plug-in Registration Tool does it, over the Web API: a `serviceendpoints` row with
    contract 8 (Webhook) and HttpHeader authentication carrying our shared secret, then one asynchronous
    PostOperation `sdkmessageprocessingsteps` row per message (Create, Update, Delete) for the table.
    Dataverse webhooks do not expire, so there is nothing to renew; delete removes the steps, then the endpoint.
    """

    if TYPE_CHECKING:  # defined by DataverseClient, which keeps the names it has looked up

        def names(self, entity_set: str) -> EntityNames: ...

    def webhook_create(
        self, *, entity_set: str, url: str, header_name: str, header_value: str, messages: tuple[str, ...] = MESSAGES
    ) -> DataverseWebhook:
        logical_name = self.names(entity_set).logical_name
        name = f"syncadmin {logical_name}"
        auth_value = (
            f'<settings><setting name="{_xml_attr(header_name)}" value="{_xml_attr(header_value)}" /></settings>'
        )
        endpoint = self.request(
            "POST",
            "serviceendpoints",
            kind="webhook",
            json={
                "name": name,
                "url": url,
                "contract": WEBHOOK_CONTRACT,
                "authtype": AUTH_HTTP_HEADER,
                "authvalue": auth_value,
            },
            headers={"Prefer": "return=representation"},
        ).json()
        webhook = DataverseWebhook(str(endpoint["serviceendpointid"]), name, url)
        try:
            self._register_steps(webhook, logical_name, messages)
        except ConnectorError:
            # Half a registration would deliver some messages and not others: remove what was made, then say why.
            with contextlib.suppress(ConnectorError):  # the registration's own error is the one to report
                self.webhook_delete(webhook)
            raise
        return webhook

    def _register_steps(self, webhook: DataverseWebhook, logical_name: str, messages: tuple[str, ...]) -> None:
        name = webhook.name
        for message in messages:
            message_id = self._single_id("sdkmessages", "sdkmessageid", f"name eq {string_literal(message)}")
            filter_id = self._single_id(
                "sdkmessagefilters",
                "sdkmessagefilterid",
                f"_sdkmessageid_value eq {message_id} and primaryobjecttypecode eq {string_literal(logical_name)}",
            )
            step = self.request(
                "POST",
                "sdkmessageprocessingsteps",
                kind="webhook",
                json={
                    "name": f"{name}: {message}",
                    "mode": STEP_ASYNCHRONOUS,
                    "stage": STAGE_POST_OPERATION,
                    "rank": 1,
                    "supporteddeployment": 0,
                    "asyncautodelete": False,
                    "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
                    "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
                    "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({webhook.endpoint_id})",
                },
                headers={"Prefer": "return=representation"},
            ).json()
            webhook.step_ids[message] = str(step["sdkmessageprocessingstepid"])

    def webhooks(self) -> list[DataverseWebhook]:
        """The registered webhook endpoints, each with its steps."""
        body = self.request(
            "GET",
            "serviceendpoints",
            kind="webhook",
            params={"$filter": f"contract eq {WEBHOOK_CONTRACT}", "$select": "serviceendpointid,name,url"},
        ).json()
        found = []
        for row in body.get("value", []):
            webhook = DataverseWebhook(str(row["serviceendpointid"]), row.get("name", ""), row.get("url", ""))
            steps = self.request(
                "GET",
                "sdkmessageprocessingsteps",
                kind="webhook",
                params={
                    "$filter": f"_eventhandler_value eq {webhook.endpoint_id}",
                    "$select": "sdkmessageprocessingstepid,name",
                },
            ).json()
            for step in steps.get("value", []):
                message = str(step.get("name", "")).rsplit(": ", 1)[-1]
                webhook.step_ids[message] = str(step["sdkmessageprocessingstepid"])
            found.append(webhook)
        return found

    def webhook_delete(self, webhook: DataverseWebhook) -> None:
        for step_id in webhook.step_ids.values():
            self.request("DELETE", f"sdkmessageprocessingsteps({step_id})", kind="webhook", idempotent=True)
        self.request("DELETE", f"serviceendpoints({webhook.endpoint_id})", kind="webhook", idempotent=True)

    def _single_id(self, entity_set: str, key: str, filter: str) -> str:
        rows = (
            self.request("GET", entity_set, kind="webhook", params={"$filter": filter, "$select": key})
            .json()
            .get("value", [])
        )
        if not rows:
            raise ConnectorError(ErrorKind.NOT_FOUND, f"Dataverse has no {entity_set} row where {filter}.")
        return str(rows[0][key])


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
