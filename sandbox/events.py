"""Write events for webhooks. Notifications are rows written in the same transaction as the change, so a rolled-back
batch or change set notifies nobody; delivery starts after the commit (sandbox/webhooks.py)."""

from __future__ import annotations

import time

from django.db import transaction

from sandbox import rows, schema, webhooks
from sandbox.models import BcSubscription, DvStep, DvWebhook, Notification


def bc_changed(table: schema.Table, company: str, record_id: str, change: str, stamp: str) -> None:
    if not table.webhooks:
        return
    subscriptions = list(
        BcSubscription.objects.using(rows.DB)
        .filter(company=company, entity_set=table.entity_set)
        .values_list("subscription_id", "resource")
    )
    if not subscriptions:
        return
    delay = float(rows.get_setting("bc_webhook_delay"))
    due = time.time() + delay
    Notification.objects.using(rows.DB).bulk_create(
        Notification(
            service="bc",
            target=subscription_id,
            payload={"resource": f"{resource.rstrip('/')}({record_id})", "changeType": change, "at": stamp},
            due_at=due,
        )
        for subscription_id, resource in subscriptions
    )
    _deliver_after_commit()


def has_dataverse_hooks(table: schema.Table) -> bool:
    return (
        DvWebhook.objects.using(rows.DB).filter(entity_set=table.entity_set).exists()
        or DvStep.objects.using(rows.DB).filter(entity_set=table.entity_set).exists()
    )


def dataverse_changed(table: schema.Table, message: str, record_id: str, context: dict) -> None:
    hooks = list(DvWebhook.objects.using(rows.DB).filter(entity_set=table.entity_set).values_list("id", "messages"))
    hooks = [str(h) for h, messages in hooks if message in messages]
    # Steps registered over the Web API (sandbox/plugin_registration.py): one delivery per step of this message.
    steps = DvStep.objects.using(rows.DB).filter(entity_set=table.entity_set, message=message)
    hooks += [f"step:{rid}" for rid in steps.values_list("rid", flat=True)]
    if not hooks:
        return
    due = time.time() + float(rows.get_setting("dataverse_webhook_delay"))
    Notification.objects.using(rows.DB).bulk_create(
        Notification(service="dataverse", target=hook, payload=context, due_at=due) for hook in hooks
    )
    _deliver_after_commit()


def _deliver_after_commit() -> None:
    transaction.on_commit(webhooks.wake_deliverer, using=rows.DB)
