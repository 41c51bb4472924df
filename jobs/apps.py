from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    # Not "Sync jobs": the breadcrumbs put the app before its models and read "Sync jobs › Sync jobs". The app holds
    # the jobs, their errors, schedules, subscriptions and reconciliations: synchronization.
    verbose_name = "Synchronization"

    def ready(self):
        # Every new table mapping gets its default schedule.
        from jobs.scheduling import signals  # noqa: F401
