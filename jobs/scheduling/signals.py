"""What scheduling does when something happens elsewhere.

A new table mapping gets its default schedule, as Business Central creates a job queue entry per mapping; and the
outcome of every finished run is recorded on its schedule (failures counted, a failing schedule paused).
"""

from django.db.models.signals import post_save
from django.dispatch import receiver

from jobs.models import SyncJob
from jobs.scheduling.schedules import schedule_create_default, schedules_record_outcomes
from jobs.signals import sync_jobs_finished
from mappings.models import TableMapping


@receiver(post_save, sender=TableMapping, dispatch_uid="jobs.schedule_for_new_mapping")
def create_schedule_for_new_mapping(sender, instance: TableMapping, created: bool, raw: bool = False, **kwargs):
    if created and not raw:
        schedule_create_default(mapping=instance)


@receiver(sync_jobs_finished, sender=SyncJob, dispatch_uid="jobs.schedule_outcomes")
def record_outcomes_on_schedules(sender, jobs: list[SyncJob], **kwargs):
    schedules_record_outcomes(jobs=jobs)
