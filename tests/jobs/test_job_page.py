"""The job page while and after a run: what a preview would do, a cancel on its way, the job's errors."""

import re

import pytest
from django.urls import reverse

from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.services import sync_job_cancel, sync_jobs_create, sync_jobs_run

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"]), pytest.mark.usefixtures("sandbox_connections")]


def run(mapping, **options):
    (job,) = sync_jobs_create(mapping=mapping, direction="to_dataverse", **options)
    sync_jobs_run(job_ids=[job.pk])
    job.refresh_from_db()
    return job


def progress(admin_client, job) -> str:
    return admin_client.get(reverse("admin:jobs_syncjob_progress", args=[job.pk])).content.decode()


def test_a_preview_shows_what_it_would_do_in_its_counts_not_zeros(admin_client, customer):
    job = run(customer, kind=JobKind.FULL, dry_run=True)
    would_insert = job.preview["counts"]["insert"]
    assert would_insert > 0 and job.inserted == 0

    fragment = progress(admin_client, job)

    header, counts = fragment.split('class="syncjob-counts">')[1].split("</table>")[0].split("</tr>")[:2]
    column = re.findall(r"<th>(.*?)</th>", header).index("Would insert")
    assert re.findall(r"<td>(.*?)</td>", counts)[column] == str(would_insert)
    assert "<th>Inserted</th>" not in fragment  # the real counters of a preview are all zero: not shown


def test_the_job_page_title_does_not_carry_a_status_that_goes_stale(admin_client, customer):
    job = run(customer, kind=JobKind.MODIFIED)
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    title = page.split("<title>")[1].split("</title>")[0]
    assert "Succeeded" not in title and "Running" not in title and f"#{job.pk} CUSTOMER" in title


def test_a_cancel_asked_while_a_job_runs_is_shown_until_the_run_stops(admin_client, customer):
    (job,) = sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse")
    SyncJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    job.refresh_from_db()
    sync_job_cancel(job=job)

    assert "Cancel requested" in progress(admin_client, job)

    SyncJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    assert "Cancel requested" not in progress(admin_client, job)


def test_the_errors_link_refreshes_with_the_progress_and_counts_the_jobs_errors(admin_client, customer):
    # Salespeople are not coupled yet: customers with one fail, naming the salesperson to couple first.
    customer.field_mappings.filter(lookup_mapping__name="SALESPEOPLE").update(enabled=True)
    job = run(customer, kind=JobKind.MODIFIED)
    assert job.failed > 0 and SyncError.objects.filter(job=job).count() == job.failed

    fragment = progress(admin_client, job)

    # Every error of the job, the resolved included (the history), since the count is the job's.
    errors_url = reverse("admin:jobs_syncerror_changelist") + f"?job={job.pk}&state=all"
    assert f'href="{errors_url.replace("&", "&amp;")}">{job.failed} errors of this job</a>' in fragment
    errors_page = admin_client.get(errors_url).content.decode()
    assert f'name="job" value="{job.pk}"' in errors_page  # the filter form shows which job the list is narrowed to
    assert errors_page.count('class="field-job_link"') == job.failed


def test_the_error_list_cuts_long_messages_between_words_and_presets_no_class_to_retry(admin_client, customer):
    from jobs.models import SyncJob as Job

    job = Job.objects.create(table_mapping=customer, direction="to_dataverse", status=JobStatus.PARTLY_FAILED)
    words = " ".join(f"word{i}" for i in range(60))
    SyncError.objects.create(
        job=job, table_mapping=customer, direction="to_dataverse", error_class="validation", message=words
    )

    page = admin_client.get(reverse("admin:jobs_syncerror_changelist")).content.decode()

    shown = page.split('class="field-short_message">')[1].split("</td>")[0]
    assert shown.endswith(" …") and shown[: -len(" …")].split()[-1] in words.split()
    assert (
        '<option value="">Choose a class…</option>' in page and "selected" not in page.split("Choose a class")[1][:300]
    )
