"""Webhook subscription management: Business Central `subscriptions`; Dataverse service endpoints and steps.

Business Central: POST `subscriptions` (the service calls our notification URL with `?validationToken=` first),
expiry after 3 days, renewal by PATCH with If-Match (handshake again), DELETE with If-Match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.odata import parse_datetime, string_literal


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


class BusinessCentralSubscriptions:
    """Mixed into BusinessCentralClient (needs `request`, `company_id`)."""

    def subscription_resource(self, entity_set: str) -> str:
        return f"/api/v2.0/companies({self.company_id})/{entity_set}"

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


class DataverseWebhooks:
    """Mixed into DataverseClient. Filled in once the sandbox's webhook registration lands."""
