"""Errors are a current state: the error list and every count show what is wrong now, and a record's error closes
when the record next synchronizes (BC's "Coupled Data Synchronization Errors" page lists what is wrong now).

Real RQ worker, real HTTP into the sandbox, real database; the pages are read through the admin.
"""

import re

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import ErrorState, JobKind
from jobs.models import SyncError, SyncJob
from jobs.services import sync_enqueue, sync_jobs_create, sync_jobs_run
from mappings.choices import UpdateConflictResolution
from mappings.models import TableMapping
from operations.metrics import open_errors_by_class
from sandbox import testing as sandbox

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

ERRORS = reverse("admin:jobs_syncerror_changelist")


@pytest.fixture
def run(django_capture_on_commit_callbacks, rq_worker):
    def run_mapping(mapping, **options):
        with django_capture_on_commit_callbacks(execute=True):
            jobs = sync_enqueue(mapping=mapping, **options)
        rq_worker()
        return [SyncJob.objects.get(pk=job.pk) for job in jobs]

    return run_mapping


def listed_error_ids(admin_client, query="") -> set[int]:
    html = admin_client.get(f"{ERRORS}?{query}").content.decode()
    return {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', html)}


def mapping_list_error_count(admin_client, mapping) -> int:
    html = admin_client.get(reverse("admin:mappings_tablemapping_changelist")).content.decode()
    link = re.escape(f"table_mapping={mapping.pk}")
    return int(re.search(rf'href="[^"]*\?{link}">(\d+)</a>', html).group(1))


def dashboard_error_count(admin_client, mapping) -> int:
    html = admin_client.get(reverse("admin:index")).content.decode()
    row = re.search(rf'<tr data-mapping="{re.escape(mapping.name)}".*?</tr>', html, re.S).group(0)
    return int(re.search(r'data-errors="(\d+)"', row).group(1))


def metric_open_errors() -> int:
    return sum(sample.value for sample in open_errors_by_class().samples)


def test_errors_of_records_that_then_synchronize_leave_the_list_and_every_count(admin_client, run, sandbox_connections):
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()
    customer.field_mappings.filter(dataverse_field="transactioncurrencyid").update(enabled=False)

    (first,) = run(customer, direction="to_dataverse")  # the customers' salespeople are not coupled yet
    failed = SyncError.objects.filter(job=first)
    failed_ids = set(failed.values_list("pk", flat=True))
    assert first.failed == len(failed_ids) > 0
    assert listed_error_ids(admin_client) == failed_ids
    assert mapping_list_error_count(admin_client, customer) == len(failed_ids)
    assert dashboard_error_count(admin_client, customer) == len(failed_ids)
    assert metric_open_errors() == len(failed_ids)
    progress = admin_client.get(reverse("admin:jobs_syncjob_progress", args=[first.pk])).content.decode()
    assert f"{len(failed_ids)} still open" in progress

    run(TableMapping.objects.get(name="SALESPEOPLE"))  # couples the salespeople
    (second,) = run(customer, direction="to_dataverse")

    assert second.failed == 0 and second.inserted == len(failed_ids)
    # What the pages say ...
    assert listed_error_ids(admin_client) == set()
    assert mapping_list_error_count(admin_client, customer) == 0
    assert dashboard_error_count(admin_client, customer) == 0
    assert metric_open_errors() == 0
    progress = admin_client.get(reverse("admin:jobs_syncjob_progress", args=[first.pk])).content.decode()
    assert f"{len(failed_ids)} errors of this job" in progress and "0 still open" in progress
    # ... the history is one filter away, each error saying what closed it ...
    assert listed_error_ids(admin_client, "state=all") == failed_ids
    assert listed_error_ids(admin_client, f"state=all&job={first.pk}") == failed_ids
    assert listed_error_ids(admin_client, "state=resolved_by_sync") == failed_ids
    assert set(failed.values_list("state", "resolved_by_job")) == {(ErrorState.RESOLVED_BY_SYNC, second.pk)}
    # ... and what the two systems hold: each record whose error closed now exists in Dataverse.
    bc_ids = set(failed.values_list("bc_id", flat=True))
    couplings = Coupling.objects.filter(table_mapping=customer, bc_id__in=bc_ids, pending=False)
    assert couplings.count() == len(bc_ids)
    dataverse_ids = list(couplings.values_list("dataverse_id", flat=True))
    with open_client(sandbox_connections[1]) as client:
        assert len(client.read_by_ids("accounts", dataverse_ids)) == len(bc_ids)


@pytest.fixture
def phone_from_dataverse(sandbox_connections):
    """CUSTOMER (no lookups) with every customer coupled, syncing the phone number from Dataverse."""
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    customer.sync_only_coupled = False
    customer.save()
    jobs = sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse")
    sync_jobs_run(job_ids=[j.pk for j in jobs])
    customer.sync_only_coupled = True
    customer.direction = "bidirectional"
    customer.update_conflict_resolution = UpdateConflictResolution.GET_FROM_DATAVERSE
    customer.save()
    customer.field_mappings.filter(bc_field="phoneNumber").update(direction="from_dataverse")
    return customer, Coupling.objects.filter(table_mapping=customer).first()


def test_a_repeated_error_supersedes_the_earlier_one_and_a_retry_that_succeeds_resolves_it(
    admin_client, run, phone_from_dataverse, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    customer, coupling = phone_from_dataverse
    too_long = "+31 20 555 0100 extension 12345678"  # fits Dataverse (50), not Business Central (30)
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1=too_long)
    first_error = SyncError.objects.get(job=run(customer, direction="from_dataverse")[0])
    second_error = SyncError.objects.get(job=run(customer, direction="from_dataverse")[0])

    first_error.refresh_from_db()
    assert (first_error.state, second_error.state) == (ErrorState.SUPERSEDED, ErrorState.OPEN)
    assert listed_error_ids(admin_client) == {second_error.pk}  # one record, one error: what is wrong now
    assert listed_error_ids(admin_client, "state=all") == {first_error.pk, second_error.pk}

    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+31 20 555 0101")
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(ERRORS, {"action": "retry_errors", "_selected_action": [second_error.pk], "confirm": "yes"})
    rq_worker()

    second_error.refresh_from_db()
    assert second_error.state == ErrorState.RESOLVED_BY_SYNC
    assert listed_error_ids(admin_client) == set()
    with open_client(sandbox_connections[0]) as client:
        assert client.read_by_ids("customers", [coupling.bc_id])[coupling.bc_id]["phoneNumber"] == "+31 20 555 0101"


def test_marking_errors_as_resolved_by_hand_keeps_them_in_the_history(admin_client, run, phone_from_dataverse):
    customer, coupling = phone_from_dataverse
    too_long = "+31 20 555 0100 extension 12345678"
    sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1=too_long)
    error = SyncError.objects.get(job=run(customer, direction="from_dataverse")[0])

    response = admin_client.post(ERRORS, {"action": "resolve_errors", "_selected_action": [error.pk]}, follow=True)

    assert "1 error(s) resolved by hand" in response.content.decode()
    error.refresh_from_db()
    assert error.state == ErrorState.RESOLVED_BY_HAND and error.resolved_by.username == "admin"
    assert listed_error_ids(admin_client) == set()
    assert listed_error_ids(admin_client, "state=resolved_by_hand") == {error.pk}


def test_an_unknown_state_in_the_filter_is_refused_and_lists_nothing(admin_client):
    response = admin_client.get(f"{ERRORS}?state=gone")
    assert response.status_code == 302 and "e=1" in response["Location"]  # the admin's "invalid filter" answer
