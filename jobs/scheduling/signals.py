"""A new table mapping gets its default schedule, as Business Central creates a job queue entry per mapping."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from mappings.models import TableMapping


@receiver(post_save, sender=TableMapping, dispatch_uid="jobs.schedule_for_new_mapping")
def create_schedule_for_new_mapping(sender, instance: TableMapping, created: bool, raw: bool = False, **kwargs):
    if created and not raw:
        from jobs.scheduling.schedules import schedule_create_default

        schedule_create_default(mapping=instance)
