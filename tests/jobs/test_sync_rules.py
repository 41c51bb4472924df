"""The engine's rules end to end: real RQ worker, real HTTP into the sandbox, real database."""

import threading
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from connectors.clients import open_client
from connectors.errors import same_error
from connectors.http import override_transport
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.services import sync_enqueue, sync_jobs_create, sync_jobs_run
from mappings.choices import DeletionConflictResolution, UpdateConflictResolution
from mappings.models import TableMapping
from sandbox import testing as sandbox

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture
def customer(sandbox_connections):
    """CUSTOMER without lookups (they have their own tests), with every unblocked customer coupled to an account."""
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    mapping.sync_only_coupled = False
    mapping.save()
    jobs = sync_jobs_create(mapping=mapping, kind=JobKind.MODIFIED, direction="to_dataverse")
    sync_jobs_run(job_ids=[j.pk for j in jobs])
    assert SyncJob.objects.get(pk=jobs[0].pk).status == JobStatus.SUCCEEDED
    mapping.sync_only_coupled = True
    mapping.save()
    return mapping


@pytest.fixture
def run(django_capture_on_commit_callbacks, rq_worker):
    def run_mapping(mapping, **options):
        with django_capture_on_commit_callbacks(execute=True):
            jobs = sync_enqueue(mapping=mapping, **options)
        rq_worker()
        return [SyncJob.objects.get(pk=job.pk) for job in jobs]

    return run_mapping


def account(sandbox_connections, dataverse_id):
    with open_client(sandbox_connections[1]) as client:
        return client.read_by_ids("accounts", [dataverse_id])[dataverse_id]


def bc_customer(sandbox_connections, bc_id):
    with open_client(sandbox_connections[0]) as client:
        return client.read_by_ids("customers", [bc_id])[bc_id]


def test_a_change_on_both_sides_with_no_policy_is_reported_and_neither_side_is_overwritten(
    customer, run, sandbox_connections
):
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, address1_city="Leiden")

    to_dataverse, from_dataverse = run(customer)

    assert (to_dataverse.failed, from_dataverse.failed) == (1, 1)
    error = SyncError.objects.filter(job=to_dataverse).get()
    assert error.error_class == "conflict" and "address1_city" in error.message
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] == "Leiden"
    assert bc_customer(sandbox_connections, coupling.bc_id)["city"] == "Utrecht"


@pytest.mark.parametrize(
    ("policy", "winner"),
    [(UpdateConflictResolution.SEND_TO_DATAVERSE, "Utrecht"), (UpdateConflictResolution.GET_FROM_DATAVERSE, "Leiden")],
)
def test_a_conflict_policy_makes_one_side_win_on_both_sides(customer, run, sandbox_connections, policy, winner):
    customer.update_conflict_resolution = policy
    customer.save()
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, address1_city="Leiden")

    jobs = run(customer)

    assert sum(job.failed for job in jobs) == 0
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] == winner
    assert bc_customer(sandbox_connections, coupling.bc_id)["city"] == winner


def test_a_deleted_counterpart_with_no_policy_fails_and_twice_the_same_failure_marks_it_skipped(customer, run):
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.delete_as_another_user("dataverse", "accounts", coupling.dataverse_id)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")

    first, _ = run(customer)
    coupling.refresh_from_db()
    assert first.failed == 1 and not coupling.skipped
    assert SyncError.objects.get(job=first).error_class == "deletion_conflict"

    second, _ = run(customer)  # retried although unchanged (failed, not skipped), fails the same way
    coupling.refresh_from_db()
    assert second.failed == 1 and coupling.skipped

    third, _ = run(customer)
    assert third.failed == 0  # skipped records stay out until someone retries them

    Coupling.objects.filter(pk=coupling.pk).unskip()  # what every "retry" in the admin does
    fourth, _ = run(customer)
    coupling.refresh_from_db()
    assert fourth.failed == 1 and not coupling.skipped  # a retry gets a fresh count, not one last attempt
    run(customer)
    coupling.refresh_from_db()
    assert coupling.skipped


def test_a_success_in_one_direction_does_not_hide_repeated_failures_in_the_other(customer, run):
    """Each direction keeps its own last error: the record still gets skipped after failing twice from Dataverse."""
    customer.direction = "bidirectional"
    customer.update_conflict_resolution = UpdateConflictResolution.SEND_TO_DATAVERSE
    customer.save()
    customer.field_mappings.filter(bc_field="phoneNumber").update(direction="from_dataverse")
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    too_long = "+31 20 555 0100 extension 12345678"  # fits Dataverse (50), not Business Central (30)
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1=too_long)

    for attempt, city in enumerate(["Utrecht", "Leiden"], start=1):
        sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city=city)
        to_dataverse, from_dataverse = run(customer)
        coupling.refresh_from_db()
        assert (to_dataverse.modified, to_dataverse.failed) == (1, 0), attempt
        assert from_dataverse.failed == 1, attempt
        assert coupling.last_error_to_dataverse == ""
        assert "must be less than or equal to 30 characters" in coupling.last_error_from_dataverse
        assert coupling.skipped == (attempt == 2)

    assert coupling.skipped  # the same error twice in the same direction, with a success in between the other way


def test_restore_records_recreates_the_deleted_counterpart_and_recouples(customer, run, sandbox_connections):
    customer.deletion_conflict_resolution = DeletionConflictResolution.RESTORE_RECORDS
    customer.save()
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    old_account = coupling.dataverse_id
    sandbox.delete_as_another_user("dataverse", "accounts", old_account)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")

    to_dataverse, _ = run(customer)

    coupling.refresh_from_db()
    assert to_dataverse.inserted == 1 and to_dataverse.failed == 0
    assert coupling.dataverse_id != old_account and not coupling.pending
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] == "Utrecht"


def test_remove_coupling_drops_the_coupling_of_a_deleted_counterpart(customer, run):
    customer.deletion_conflict_resolution = DeletionConflictResolution.REMOVE_COUPLING
    customer.save()
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.delete_as_another_user("dataverse", "accounts", coupling.dataverse_id)
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")

    to_dataverse, _ = run(customer)

    assert to_dataverse.uncoupled == 1
    assert not Coupling.objects.filter(pk=coupling.pk).exists()


def test_a_missing_lookup_coupling_fails_the_record_naming_what_to_couple_first(sandbox_connections, run):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.sync_only_coupled = False
    mapping.save()
    salesperson_codes = {
        row["salespersonCode"]
        for page in open_client(sandbox_connections[0]).read_pages("customers", select=["id", "salespersonCode"])
        for row in page.rows
        if row["salespersonCode"]
    }

    to_dataverse, _ = run(mapping)

    errors = SyncError.objects.filter(job=to_dataverse, error_class="missing_dependency")
    assert errors.exists()
    message = errors.first().message
    assert "SALESPEOPLE record" in message and "must be coupled" in message
    assert any(repr(code) in message for code in salesperson_codes)


def test_a_run_whose_source_cannot_be_read_fails_and_is_not_reported_as_no_changes(customer, run):
    sandbox.inject_faults("503", count=200, service="bc")
    try:
        to_dataverse, from_dataverse = run(customer)
    finally:
        sandbox.clear_faults()
    assert to_dataverse.status == JobStatus.FAILED
    assert "could not be read" in to_dataverse.message
    customer.refresh_from_db()


def ids_of(connection, entity_set: str, key: str) -> set[str]:
    return {str(row[key]) for page in open_client(connection).read_pages(entity_set, select=[key]) for row in page.rows}


def test_with_requests_failing_transiently_no_record_fails_or_is_created_twice(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    mapping.sync_only_coupled = False
    mapping.save()
    kinds = iter(["429", "503", "timeout", "drop"] * 50)
    bc, dataverse = sandbox_connections
    before = ids_of(bc, "customers", "id"), ids_of(dataverse, "accounts", "accountid")

    def fail_some_requests(job):
        sandbox.inject_faults(next(kinds), count=1, retry_after=0)

    jobs = sync_jobs_create(mapping=mapping, kind=JobKind.MODIFIED)
    sync_jobs_run(job_ids=[j.pk for j in jobs], on_progress=fail_some_requests)
    sandbox.clear_faults()

    jobs = [SyncJob.objects.get(pk=j.pk) for j in jobs]
    total_requests = sum(j.http_requests for j in jobs)
    retries = sum(j.http_requests_by_kind.get("retry", 0) for j in jobs)
    assert retries >= total_requests * 0.1, (retries, total_requests)  # at least one request in ten failed
    # No record fails for a fault whose outcome is known. Only a Business Central create whose connection dropped or
    # timed out can stay unsettled in the run (BC chooses the id, and the row may still land): it fails as
    # transient, is never skipped, and the next run looks for it before creating it (which faults hit which request
    # depends on the parallel writes' timing, so it happens in some runs only).
    unsettled = SyncError.objects.filter(job__in=jobs)
    assert all("no number to look it up by" in error.message for error in unsettled), [e.message for e in unsettled]
    assert all(j.failed == unsettled.filter(job=j).count() for j in jobs), [(j.status, j.message) for j in jobs]
    assert not Coupling.objects.filter(table_mapping=mapping, skipped=True).exists()

    unsettled.update(next_retry_at=timezone.now() - timedelta(seconds=1))  # as if their back-off had ended
    settling = sync_jobs_create(mapping=mapping, kind=JobKind.MODIFIED)
    sync_jobs_run(job_ids=[j.pk for j in settling])
    settled = SyncJob.objects.filter(pk__in=[j.pk for j in settling])
    assert all(j.failed == 0 for j in settled), [(j.status, j.message) for j in settled]
    couplings = Coupling.objects.filter(table_mapping=mapping)
    assert not couplings.filter(pending=True).exists()
    # Every record the runs created is coupled: an unsettled create was found by the next run, not made twice.
    created_in_bc = ids_of(bc, "customers", "id") - before[0]
    created_in_dataverse = ids_of(dataverse, "accounts", "accountid") - before[1]
    assert created_in_bc <= {str(c.bc_id) for c in couplings}
    assert created_in_dataverse <= {str(c.dataverse_id) for c in couplings}


def test_a_running_job_can_be_cancelled_between_pages(customer):
    jobs = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse")

    def cancel(job):
        SyncJob.objects.filter(pk=job.pk).update(cancel_requested=True)

    sync_jobs_run(job_ids=[j.pk for j in jobs], on_progress=cancel)
    job = SyncJob.objects.get(pk=jobs[0].pk)
    assert job.status == JobStatus.CANCELLED and job.finished_at


def test_a_preview_counts_and_shows_field_differences_but_writes_nothing(customer, run, sandbox_connections):
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")

    (preview,) = run(customer, direction="to_dataverse", dry_run=True)

    assert preview.preview["counts"]["update"] == 1
    (item,) = [i for i in preview.preview["sample"] if i["action"] == "update"]
    assert {
        "field": "address1_city",
        "old": account(sandbox_connections, coupling.dataverse_id)["address1_city"],
        "new": "Utrecht",
    } in item["diffs"]
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] != "Utrecht"
    coupling_before = coupling.bc_etag
    coupling.refresh_from_db()
    assert coupling.bc_etag == coupling_before


def test_a_full_synchronization_creates_what_is_missing_and_rewrites_coupled_records(
    customer, run, sandbox_connections
):
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, address1_city="Elsewhere")
    jobs = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse")
    sync_jobs_run(job_ids=[j.pk for j in jobs])  # full syncs through real RQ workers: tests/system
    full = SyncJob.objects.get(pk=jobs[0].pk)
    assert full.status == JobStatus.SUCCEEDED, full.message
    assert full.modified >= 1
    assert (
        account(sandbox_connections, coupling.dataverse_id)["address1_city"]
        == bc_customer(sandbox_connections, coupling.bc_id)["city"]
    )


def test_an_edit_made_while_a_run_is_writing_is_not_overwritten(customer, sandbox_connections, sandbox_http):
    """The counterpart changes between our read and our write: the ETag no longer matches, the write is refused."""
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Utrecht")
    jobs = sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse")

    from connectors import dataverse

    original = dataverse.DataverseClient.write_many

    def edit_then_write(self, operations):
        with sandbox_http.app.on_the_test_connections():  # writes are sent from the run's writer threads
            sandbox.edit_as_another_user(
                "dataverse", "accounts", coupling.dataverse_id, address1_city="Typed meanwhile"
            )
        return original(self, operations)

    dataverse.DataverseClient.write_many = edit_then_write
    try:
        sync_jobs_run(job_ids=[j.pk for j in jobs])
    finally:
        dataverse.DataverseClient.write_many = original

    job = SyncJob.objects.get(pk=jobs[0].pk)
    assert job.failed == 1
    assert SyncError.objects.get(job=job).error_class == "conflict"
    assert account(sandbox_connections, coupling.dataverse_id)["address1_city"] == "Typed meanwhile"


def test_the_losing_sides_one_way_change_and_the_winning_sides_edit_both_arrive_in_one_run(
    customer, run, sandbox_connections
):
    """Dataverse wins the phone; Business Central's credit limit (to Dataverse only) still goes over, and the
    reverse pass still carries Dataverse's phone back although our To-pass write changed the account's version."""
    customer.update_conflict_resolution = UpdateConflictResolution.GET_FROM_DATAVERSE
    customer.save()
    coupling = Coupling.objects.filter(table_mapping=customer).first()
    sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, phoneNumber="111", creditLimit=7000)
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="222")

    jobs = run(customer)

    assert sum(job.failed for job in jobs) == 0
    dv, bc = account(sandbox_connections, coupling.dataverse_id), bc_customer(sandbox_connections, coupling.bc_id)
    assert (dv["telephone1"], bc["phoneNumber"]) == ("222", "222")
    assert float(dv["creditlimit"]) == 7000
    later = run(customer)
    assert sum(job.modified for job in later) == 0  # and then nothing more to do


def test_a_record_that_could_not_be_created_is_retried_unchanged_once_its_dependency_is_coupled(
    sandbox_connections, run
):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.sync_only_coupled = False
    mapping.save()
    mapping.field_mappings.filter(dataverse_field="transactioncurrencyid").update(enabled=False)

    (first,) = run(mapping, direction="to_dataverse")
    assert first.failed > 0  # their salespeople are not coupled yet
    failed_ids = set(SyncError.objects.filter(job=first).values_list("bc_id", flat=True))

    run(TableMapping.objects.get(name="SALESPEOPLE"))  # couples the salespeople by e-mail
    (second,) = run(mapping, direction="to_dataverse")  # no customer changed since the first run

    assert second.failed == 0
    assert second.inserted == len(failed_ids)
    created = Coupling.objects.filter(table_mapping=mapping, bc_id__in=failed_ids)
    assert created.count() == len(failed_ids) and not created.filter(pending=True).exists()


def test_a_change_made_during_a_run_is_not_lost_when_the_servers_clock_is_behind_ours(
    customer, run, sandbox_connections
):
    """The watermark stops at the run's start on the source server's clock (from its Date header), not ours.

    Business Central's clock is 30 s behind this machine's. During the run, a record on a page already read
    changes, then (later by more than the overlap) one on a page not read yet: the run sees only the second
    change, and without the server's clock its own clock would let the watermark pass the first one for good.
    """
    import time

    from jobs.engine.reader import WATERMARK_OVERLAP
    from sandbox import rows as sandbox_rows

    bc_connection = sandbox_connections[0]
    type(bc_connection).objects.filter(pk=bc_connection.pk).update(page_size=2)
    bc_connection.refresh_from_db()
    sandbox_rows.set_setting("clock_offset_seconds", -30)
    couplings = list(Coupling.objects.filter(table_mapping=customer)[:4])
    for coupling in couplings:
        sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Before the run")
    customer.refresh_from_db()
    with open_client(bc_connection) as client:  # the order the run reads them in
        first_page, *_, last_page = client.read_pages(
            "customers", modified_since=customer.bc_watermark, select=["id"], filter=customer.table_filter or None
        )
    on_read_page, on_later_page = first_page.rows[0]["id"], last_page.rows[-1]["id"]

    def edit_during_the_run(job, edited=[]):  # noqa: B006 - once, at the first page
        if not edited:
            sandbox.edit_as_another_user("bc", "customers", on_read_page, city="Changed during the run")
            time.sleep(WATERMARK_OVERLAP.total_seconds() + 0.5)  # later than the overlap can make up for
            sandbox.edit_as_another_user("bc", "customers", on_later_page, city="Changed a bit later")
            edited.append(True)

    jobs = sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse")
    sync_jobs_run(job_ids=[j.pk for j in jobs], on_progress=edit_during_the_run)
    assert SyncJob.objects.get(pk=jobs[0].pk).status == JobStatus.SUCCEEDED

    run(customer, direction="to_dataverse")

    dataverse_id = Coupling.objects.get(table_mapping=customer, bc_id=on_read_page).dataverse_id
    assert account(sandbox_connections, dataverse_id)["address1_city"] == "Changed during the run"


class FaultOnEveryWrite(httpx.BaseTransport):
    """The sandbox over `inner`, with one fault of `kind` injected just before each write to `service` (Business
    Central by default; a batch of writes, or of deletions, is one POST).

    Every attempt of a write fails (the connector's own retries included); the reads of the run go through.
    """

    def __init__(self, inner: httpx.BaseTransport, kind: str, service: str = "bc"):
        self.inner, self.kind, self.service = inner, kind, service
        # The run reads its next page while it writes: one request at a time, so the fault injected for a write is
        # taken by that write and not by a read beside it.
        self.one_at_a_time = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        written = request.method in ("POST", "PATCH", "PUT", "DELETE")
        with self.one_at_a_time:
            if written and request.url.path.startswith(f"/sandbox/{self.service}/"):
                with self.inner.app.on_the_test_connections():  # writes are sent from the run's writer threads
                    sandbox.inject_faults(self.kind, count=1, service=self.service, retry_after=0)
            return self.inner.handle_request(request)


@pytest.fixture
def phone_from_dataverse(customer):
    """CUSTOMER syncing the phone number from Dataverse to Business Central, for one coupled record."""
    customer.direction = "bidirectional"
    customer.update_conflict_resolution = UpdateConflictResolution.GET_FROM_DATAVERSE
    customer.save()
    customer.field_mappings.filter(bc_field="phoneNumber").update(direction="from_dataverse")
    return Coupling.objects.filter(table_mapping=customer).first()


def back_off_passes(coupling) -> None:
    """As if the record's back-off had ended: its open error's next retry time is now past."""
    SyncError.objects.open().filter(dataverse_id=coupling.dataverse_id, direction="from_dataverse").update(
        next_retry_at=timezone.now() - timedelta(seconds=1)
    )


def open_error(coupling) -> SyncError:
    return SyncError.objects.open().get(dataverse_id=coupling.dataverse_id, direction="from_dataverse")


@pytest.mark.parametrize("fault", ["429", "503", "timeout", "drop"])  # throttled, 5xx, no answer, unknown outcome
def test_a_record_failing_transiently_is_never_skipped_and_is_retried_after_a_growing_back_off(
    customer, phone_from_dataverse, run, sandbox_connections, sandbox_http, fault, admin_client
):
    """Issue 16: transient errors are never skipped and are retried with back-off. (Until this change the next run
    retried at once: this test expected that; now a run within the back-off leaves the record alone.)"""
    coupling = phone_from_dataverse
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 20 555 0199")

    messages = []
    with override_transport(FaultOnEveryWrite(sandbox_http, fault)):
        for attempt, minutes in ((1, 1), (2, 2), (3, 4)):
            before = timezone.now()
            (from_dataverse,) = run(customer, direction="from_dataverse")
            coupling.refresh_from_db()
            assert from_dataverse.failed == 1, (attempt, from_dataverse.status, from_dataverse.message)
            error = SyncError.objects.get(job=from_dataverse)
            assert error.error_class in ("transient", "throttled"), (attempt, error.error_class, error.message)
            messages.append(error.message)
            assert not coupling.skipped, attempt
            # 1, 2, 4 minutes from the failure: the back-off grows with each failure in a row.
            assert error.retry_attempt == attempt
            assert (
                before + timedelta(minutes=minutes)
                <= error.next_retry_at
                <= timezone.now() + timedelta(minutes=minutes)
            )
            # A run within the back-off does not retry it: not failed again, its error still the open one; it counts
            # it as waiting to retry, so its records read still add up.
            (waiting,) = run(customer, direction="from_dataverse")
            coupling.refresh_from_db()
            assert (waiting.failed, waiting.modified, waiting.waiting) == (0, 0, 1), attempt
            assert waiting.counts_reconcile, (waiting.records_read, waiting.outcomes)
            assert coupling.last_job_from_dataverse == from_dataverse.pk and open_error(coupling).pk == error.pk
            back_off_passes(coupling)
    # The same error each time: a permanent one would have been skipped by now.
    assert same_error(messages[0], messages[1]) and same_error(messages[1], messages[2])
    page = admin_client.get(reverse("admin:jobs_syncerror_change", args=[error.pk])).content.decode()
    assert "Next retry at" in page and "failed transiently 3 time(s) in a row" in page
    sandbox.clear_faults()

    (from_dataverse,) = run(customer, direction="from_dataverse")  # retried although unchanged since
    coupling.refresh_from_db()
    assert (from_dataverse.modified, from_dataverse.failed) == (1, 0)
    assert bc_customer(sandbox_connections, coupling.bc_id)["phoneNumber"] == "+31 20 555 0199"
    assert not coupling.skipped and coupling.last_error_from_dataverse == ""
    assert not SyncError.objects.open().filter(dataverse_id=coupling.dataverse_id).exists()  # the wait is over


@pytest.mark.parametrize("kind", [JobKind.RECORDS, JobKind.FULL])
def test_synchronize_now_and_a_full_sync_do_not_wait_for_the_back_off_and_a_success_starts_it_again(
    customer, phone_from_dataverse, run, sandbox_connections, sandbox_http, kind
):
    coupling = phone_from_dataverse
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 20 555 0199")
    with override_transport(FaultOnEveryWrite(sandbox_http, "503")):
        run(customer, direction="from_dataverse")
        back_off_passes(coupling)
        run(customer, direction="from_dataverse")
    assert open_error(coupling).retry_attempt == 2  # waiting about two minutes now
    sandbox.clear_faults()

    ids = [str(coupling.dataverse_id)] if kind == JobKind.RECORDS else None
    (now,) = run(customer, direction="from_dataverse", kind=kind, record_ids=ids)

    assert now.failed == 0 and now.modified >= 1, now.message
    assert bc_customer(sandbox_connections, coupling.bc_id)["phoneNumber"] == "+31 20 555 0199"
    # After a success, the next transient failure waits one minute again, not four.
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 20 555 0200")
    with override_transport(FaultOnEveryWrite(sandbox_http, "503")):
        (again,) = run(customer, direction="from_dataverse")
    sandbox.clear_faults()
    assert again.failed == 1 and open_error(coupling).retry_attempt == 1


def test_a_record_failing_twice_with_the_same_permanent_error_is_skipped_and_the_next_run_leaves_it(
    customer, phone_from_dataverse, run, sandbox_connections
):
    coupling = phone_from_dataverse
    too_long = "+31 20 555 0100 extension 12345678"  # fits Dataverse (50), not Business Central (30)
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1=too_long)

    for attempt in (1, 2):
        (from_dataverse,) = run(customer, direction="from_dataverse")
        coupling.refresh_from_db()
        assert from_dataverse.failed == 1, attempt
        assert SyncError.objects.get(job=from_dataverse).error_class == "validation"
        assert coupling.skipped == (attempt == 2)

    (from_dataverse,) = run(customer, direction="from_dataverse")
    assert from_dataverse.failed == 0  # skipped records stay out until someone retries them
