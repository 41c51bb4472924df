"""RQ entry points of operations. Thin: call one service."""

from operations.alerts import alerts_evaluate


def evaluate_alerts() -> None:
    """Open and resolve alert incidents (RQ cron calls this every 30 seconds)."""
    alerts_evaluate()
