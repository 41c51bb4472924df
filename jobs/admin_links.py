"""Links to sync jobs, for the messages the admin shows after queuing them."""

from django.urls import reverse
from django.utils.html import format_html, format_html_join


def job_link(job) -> str:
    return format_html('<a href="{}">job #{}</a>', reverse("admin:jobs_syncjob_change", args=[job.pk]), job.pk)


def job_links(jobs) -> str:
    """'#12 CUSTOMER To Dataverse, #13 ...', each linking to its job page."""
    return format_html_join(
        ", ",
        '<a href="{}">#{} {} {}</a>',
        (
            (reverse("admin:jobs_syncjob_change", args=[job.pk]), job.pk, job.table_mapping.name,
             job.get_direction_display())
            for job in jobs
        ),
    )  # fmt: skip
