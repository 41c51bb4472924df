from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Running syncadmin unattended: the health dashboard, alerts, metrics and the health endpoint."""

    name = "operations"
    verbose_name = "Operations"

    def ready(self):
        from operations import signals  # noqa: F401 (connects the run-end log line)
