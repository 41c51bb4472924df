from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Running syncadmin unattended: the health dashboard, alerts, metrics and the health endpoint."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self):
        from connectors import observers
        from operations import (
            signals,  # noqa: F401 (connects the run-end log line)
            traffic,
        )

        # Every request the connectors send is counted per connection and minute, for the dashboard.
        if traffic.record not in observers.observers:
            observers.observers.append(traffic.record)
