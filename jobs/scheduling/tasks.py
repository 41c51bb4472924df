"""RQ entry points of scheduling. Thin: take primitive ids, call one service."""

from jobs.scheduling import notifications, subscriptions


def flush_notified_changes(mapping_id: int, direction: str) -> None:
    notifications.changes_flush(mapping_id=mapping_id, direction=direction)


def renew_webhook_subscriptions() -> None:
    subscriptions.subscriptions_renew_due()
