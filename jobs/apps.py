from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Sync jobs"

    def ready(self):
        # Every new table mapping gets its default schedule.
        from jobs.scheduling import signals  # noqa: F401
