"""Links to sync jobs, for the messages the admin shows after queuing them, and to a mapping's couplings, errors
and jobs (each list's own filter parameters, kept here in one place)."""

from urllib.parse import urlencode

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


def mapping_couplings_url(mapping_id: int, **filters) -> str:
    """The coupling list of one mapping; `filters` are more of its FilterSet's parameters (e.g. skipped="true")."""
    return reverse("admin:coupling_coupling_changelist") + "?" + urlencode({"table_mapping": mapping_id, **filters})


def mapping_errors_url(mapping_id: int) -> str:
    """The sync error list of one mapping (its FilterSet takes, and shows, `table_mapping`)."""
    return reverse("admin:jobs_syncerror_changelist") + "?" + urlencode({"table_mapping": mapping_id})


def mapping_jobs_url(mapping_id: int) -> str:
    """The sync job list of one mapping (the admin's own field filter)."""
    return reverse("admin:jobs_syncjob_changelist") + "?" + urlencode({"table_mapping__id__exact": mapping_id})
