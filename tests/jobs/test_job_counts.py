"""Counts that reconcile, for every kind of job: the records a job read equal the sum of their outcomes
(inserted + modified + deleted + unchanged + skipped + failed + uncoupled; a preview's would-do counts; a match-based
coupling's pairs, ambiguous records and records without a match), checked against the couplings and errors the job
left; and the job page says so, or shows the equation when it does not hold."""

import re
import uuid

import pytest
from django.urls import reverse

from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.resolution.services import sync_errors_retry
from jobs.services import coupling_job_enqueue, sync_jobs_create, sync_jobs_create_in_order, sync_jobs_run
from mappings.models import TableMapping

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"]), pytest.mark.usefixtures("sandbox_connections")]


def ran(jobs):
    sync_jobs_run(job_ids=[job.pk for job in jobs])
    return [SyncJob.objects.get(pk=job.pk) for job in jobs]


def assert_reconciles(job):
    assert job.records_read > 0, (job, job.counts)
    assert job.counts_reconcile, (job, job.records_read, job.outcomes)


def page(admin_client, job) -> str:
    return admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()


def test_one_mapping_modified_records_and_its_errors(admin_client, customer):
    customer.field_mappings.filter(lookup_mapping__name="SALESPEOPLE").update(enabled=True)
    (job,) = ran(sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse"))
    assert_reconciles(job)
    assert job.failed == SyncError.objects.filter(job=job).count() > 0
    # Each failed record waits as a failed reservation, retried at the next run.
    assert (
        job.failed
        == Coupling.objects.filter(table_mapping=customer, pending=True, last_job_to_dataverse=job.pk).count()
    )
    assert "do not add up" not in page(admin_client, job)


def test_a_modified_chain_each_job(customer):
    jobs, _ = sync_jobs_create_in_order(mappings=[customer], kind=JobKind.MODIFIED, with_dependencies=True)
    for job in ran(jobs):
        assert_reconciles(job)


def test_a_full_synchronization_and_its_preview(customer):
    (preview,) = ran(sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse", dry_run=True))
    (full,) = ran(sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse"))
    assert_reconciles(preview)
    assert_reconciles(full)
    assert preview.records_read == full.records_read


def test_one_record_and_a_retry(customer):
    customer.field_mappings.filter(lookup_mapping__name="SALESPEOPLE").update(enabled=True)
    (first,) = ran(sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse"))
    error = SyncError.objects.filter(job=first).first()
    (one,) = ran(
        sync_jobs_create(mapping=customer, kind=JobKind.RECORDS, direction="to_dataverse", record_ids=[error.bc_id])
    )
    assert one.records_read == 1
    assert_reconciles(one)
    # Retrying missing-dependency errors first synchronizes the mappings the records depend on, in the same job.
    *dependencies, retry = ran(sync_errors_retry(errors=SyncError.objects.filter(job=first)))
    assert retry.table_mapping == customer and retry.kind == JobKind.RECORDS
    assert retry.records_read == first.failed
    for job in [*dependencies, retry]:
        assert_reconciles(job)


def test_match_based_coupling_counts_what_it_read(admin_client):
    salespeople = TableMapping.objects.get(name="SALESPEOPLE")
    (job,) = ran([coupling_job_enqueue(mapping=salespeople)])
    assert_reconciles(job)
    assert job.coupled == Coupling.objects.filter(table_mapping=salespeople).count() > 0
    assert "0 records read" not in page(admin_client, job)


def test_a_mapping_that_synchronizes_only_coupled_records_counts_the_others_as_skipped(admin_client):
    """A VENDOR run read 60 records and showed all zeros: the uncoupled ones are skipped, and said so."""
    vendor = TableMapping.objects.get(name="VENDOR")
    vendor.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    assert vendor.sync_only_coupled and not Coupling.objects.filter(table_mapping=vendor).exists()
    (job,) = ran(sync_jobs_create(mapping=vendor, kind=JobKind.MODIFIED, direction="to_dataverse"))
    assert job.records_read > 0 and job.skipped == job.records_read
    assert_reconciles(job)


def test_the_page_shows_the_equation_when_the_counts_do_not_add_up(admin_client, customer):
    (job,) = ran(sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse"))
    SyncJob.objects.filter(pk=job.pk).update(progress_done=job.records_read + 3)

    shown = page(admin_client, job)

    assert "The counts do not add up" in shown
    assert f"{job.records_read + 3} records read, but {job.inserted} inserted + " in shown


def test_a_run_where_every_record_failed_is_failed_not_partly_failed(customer):
    customer.field_mappings.filter(lookup_mapping__name="SALESPEOPLE").update(enabled=True)
    # Only the customers with a salesperson, none of whom is coupled: every one of them fails.
    customer.table_filter = "blocked eq ' ' and salespersonCode ne ''"
    customer.save()
    (job,) = ran(sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse"))
    assert job.failed == job.records_read > 0
    assert job.status == JobStatus.FAILED


def test_a_cancelled_preview_still_adds_up_with_what_it_planned_so_far(customer):
    (job,) = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse", dry_run=True)
    pages = []

    def cancel_after_one_page(job):
        pages.append(1)
        if len(pages) == 2:
            SyncJob.objects.filter(pk=job.pk).update(cancel_requested=True)

    sync_jobs_run(job_ids=[job.pk], on_progress=cancel_after_one_page)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.records_read == 5  # the first page of five
    assert_reconciles(job)


def test_an_uncoupling_job_counts_what_it_removed(customer):
    from jobs.services import uncoupling_job_enqueue

    Coupling.objects.bulk_create(
        [Coupling(table_mapping=customer, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4()) for _ in range(3)]
    )
    (job,) = ran([uncoupling_job_enqueue(mapping=customer)])
    assert job.uncoupled == job.records_read == 3 and not Coupling.objects.filter(table_mapping=customer).exists()
    assert_reconciles(job)


@pytest.mark.parametrize("kind", list(JobKind))
def test_failed_and_skipped_records_with_nothing_through_are_a_failed_run_of_every_kind(kind):
    """Skipped is no success: "partly failed" needs at least one record written, coupled, uncoupled or in sync."""
    assert SyncJob(kind=kind, failed=4, skipped=2).every_record_failed
    for succeeded in ("inserted", "modified", "deleted", "unchanged", "coupled", "uncoupled"):
        assert not SyncJob(kind=kind, failed=4, skipped=2, **{succeeded: 1}).every_record_failed
    assert not SyncJob(kind=kind, skipped=2).every_record_failed  # nothing failed


def test_a_coupling_job_that_coupled_nothing_failed_and_its_link_lists_the_ambiguous_records_it_counts(
    admin_client, customer
):
    """The walk's job #12: 0 coupled, 4 ambiguous, 2 without a match said "Partly failed", and its "4 errors of this
    job" opened a list of 0 errors (ambiguous records are kept in the ambiguous matches list, not as errors)."""
    from coupling.models import AmbiguousMatch
    from sandbox import testing as sandbox

    customer.field_mappings.filter(bc_field="displayName").update(use_for_matching=True)
    (first,) = ran([coupling_job_enqueue(mapping=customer)])
    assert first.coupled > 0
    for _ in range(2):
        sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading", blocked=" ")
    sandbox.create_as_another_user("dataverse", "accounts", name="Twin Trading", customertypecode=3)
    sandbox.create_as_another_user("dataverse", "accounts", name="Lonely Row", customertypecode=3)

    (job,) = ran([coupling_job_enqueue(mapping=customer)])

    assert (job.coupled, job.failed > 0, job.skipped > 0) == (0, True, True)
    assert_reconciles(job)
    assert job.status == JobStatus.FAILED
    shown = page(admin_client, job)
    assert "<strong>Failed</strong>" in shown
    link = re.search(r'<a class="syncjob-errors" href="([^"]+)">(\d+) ambiguous records of this job</a>', shown)
    assert link and int(link.group(2)) == job.failed
    listed = admin_client.get(link.group(1).replace("&amp;", "&"))
    assert listed.context["cl"].result_count == job.failed == AmbiguousMatch.objects.filter(job_id=job.pk).count()
    assert f"{job.failed} still listed" in shown


def test_a_sync_job_s_error_link_opens_exactly_the_errors_it_counts_whatever_their_state_now(admin_client, customer):
    customer.field_mappings.filter(lookup_mapping__name="SALESPEOPLE").update(enabled=True)
    (job,) = ran(sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse"))
    assert job.failed > 0
    # A later run supersedes or resolves them: the job's link still lists each of them.
    SyncError.objects.filter(job=job).update(state="superseded")
    shown = page(admin_client, job)
    link = re.search(r'<a class="syncjob-errors" href="([^"]+)">(\d+) errors? of this job</a>', shown)
    assert int(link.group(2)) == job.failed
    listed = admin_client.get(link.group(1).replace("&amp;", "&"))
    assert listed.context["cl"].result_count == job.failed
    assert "0 still open" in shown
