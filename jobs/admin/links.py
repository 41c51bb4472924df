"""Links to sync jobs, for the messages the admin shows after queuing them, and to a mapping's couplings, errors
and jobs (each list's own filter parameters, kept here in one place)."""

from urllib.parse import urlencode

from django.urls import reverse
from django.utils.html import format_html, format_html_join

from coupling.models import AmbiguousMatch
from jobs.choices import JobKind


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


def requester_html(job) -> str:
    """Who or what started the job, the reconciliation it came from linked (job page and list)."""
    if not job.reconciliation_id:
        return job.requester
    url = reverse("admin:jobs_reconciliation_change", args=[job.reconciliation_id])
    name = f"reconciliation #{job.reconciliation_id}"
    before, _, after = job.requester.partition(name)
    return format_html('{}<a class="syncjob-reconciliation" href="{}">{}</a>{}', before, url, name, after)


def job_errors_links(job) -> dict:
    """The "errors of this job" links, each counting exactly the rows the list it opens shows.

    A match-based coupling's failures are its ambiguous records, kept in the ambiguous matches list (not as errors)
    until coupled by hand or found again by a later coupling run.
    """
    if job.kind == JobKind.COUPLING:
        url = reverse("admin:coupling_ambiguousmatch_changelist") + "?" + urlencode({"job_id": job.pk})
        return {
            "label": "ambiguous record",
            "count": job.failed,
            "url": url,
            "open_label": "still listed",
            "open_count": AmbiguousMatch.objects.filter(job_id=job.pk).count(),
            "open_url": url,
        }
    errors_url = reverse("admin:jobs_syncerror_changelist")
    return {
        "label": "error",
        "count": job.errors.count(),
        "url": errors_url + "?" + urlencode({"job": job.pk, "state": "all"}),
        "open_label": "still open",
        "open_count": job.errors.open().count(),
        "open_url": errors_url + "?" + urlencode({"job": job.pk}),
    }
