"""The default schedule of a mapping, as Business Central's recurring job queue entries (domain.md section 5)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

MINUTES_BETWEEN_RUNS = 30
MAX_ATTEMPTS = 10
# Inactivity timeout per mapping name: 720 minutes for the master data that changes often, 1440 for the rest.
INACTIVITY_TIMEOUT_MINUTES = {"CUSTOMER": 720, "VENDOR": 720, "CONTACT": 720, "CURRENCY": 720}
OTHER_INACTIVITY_TIMEOUT_MINUTES = 1440


def default_schedule_values(mapping_name: str) -> dict:
    return {
        # The first run comes one interval after the schedule is made, not at once: a new installation (or a new
        # mapping) does not start writing to either system before an administrator has looked at its settings.
        "next_run_at": timezone.now() + timedelta(minutes=MINUTES_BETWEEN_RUNS),
        "minutes_between_runs": MINUTES_BETWEEN_RUNS,
        "inactivity_timeout_minutes": INACTIVITY_TIMEOUT_MINUTES.get(mapping_name, OTHER_INACTIVITY_TIMEOUT_MINUTES),
        "max_attempts": MAX_ATTEMPTS,
    }


def create_missing_schedules(*, schedule_model, mapping_model) -> int:
    """Give every mapping without a schedule its default one; return how many were created.

    Takes the model classes so the data migration can pass its historical models.
    """
    missing = mapping_model.objects.filter(schedule__isnull=True)
    schedules = [schedule_model(table_mapping=m, **default_schedule_values(m.name)) for m in missing]
    schedule_model.objects.bulk_create(schedules)
    return len(schedules)
