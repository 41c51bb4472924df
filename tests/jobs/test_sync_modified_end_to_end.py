"""The walking skeleton's slice, end to end: the admin action enqueues an RQ job, a real worker runs it, and the
engine synchronizes Business Central customers and Dataverse accounts over HTTP through the sandbox."""

import time

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.models import SyncJob
from mappings.models import TableMapping
from tests.previewing import confirm_after_preview

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def all_rows(connection, entity_set, filter=None):
    with open_client(connection) as client:
        return [row for page in client.read_pages(entity_set, filter=filter) for row in page.rows]


def wait_past_the_servers_second():
    """Ask for the next run after the last writes, not within their second, as an administrator does.

    The confirmation's check for changes since its preview knows the server's clock only to the whole second of HTTP's
    Date header, so it takes a write in the second before the preview (the previous run's, or an edit) for one after
    it, refuses and previews again: the safe side, but not what these tests are about.
    """
    time.sleep(1.1)


def run_modified_sync_from_admin(admin_client, mapping, django_capture_on_commit_callbacks, rq_worker):
    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_after_preview(
            admin_client,
            reverse("admin:mappings_tablemapping_changelist"),
            {"action": "synchronize_modified_records", "_selected_action": [mapping.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert "Synchronization queued" in response.content.decode()
    rq_worker()
    return list(SyncJob.objects.filter(table_mapping=mapping, dry_run=False).order_by("-pk")[:2])[::-1]


def test_synchronize_modified_records_creates_and_couples_then_updates_both_ways(
    admin_client, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()
    unblocked = all_rows(bc, "customers", filter="blocked eq ' '")
    dv_customers = all_rows(dataverse, "accounts", filter="statecode eq 0 and customertypecode eq 3")

    to_dataverse, from_dataverse = run_modified_sync_from_admin(
        admin_client, customer, django_capture_on_commit_callbacks, rq_worker
    )

    # The mappings CUSTOMER depends on ran first, in the same job, and coupled what customers refer to.
    first_jobs = SyncJob.objects.exclude(table_mapping=customer).filter(dry_run=False).order_by("pk")
    assert [j.table_mapping.name for j in first_jobs] == ["CURRENCY", "SALESPEOPLE"]
    assert all(j.coupled > 0 for j in first_jobs)
    assert (to_dataverse.direction, from_dataverse.direction) == ("to_dataverse", "from_dataverse")
    assert to_dataverse.status == JobStatus.SUCCEEDED, to_dataverse.message
    assert from_dataverse.status == JobStatus.SUCCEEDED, from_dataverse.message
    assert to_dataverse.inserted == len(unblocked)
    assert from_dataverse.inserted == len(dv_customers)
    assert to_dataverse.http_requests > 0
    # Every unblocked customer now has an account of the same name, coupled to it; and the other way round.
    accounts = {row["accountid"]: row for row in all_rows(dataverse, "accounts")}
    customers = {row["id"]: row for row in all_rows(bc, "customers")}
    couplings = Coupling.objects.filter(table_mapping=customer)
    assert couplings.count() == len(unblocked) + len(dv_customers)
    for coupling in couplings:
        assert not coupling.pending
        account = accounts[str(coupling.dataverse_id)]
        bc_customer = customers[str(coupling.bc_id)]
        assert account["name"] == bc_customer["displayName"]
        assert account["customertypecode"] == 3

    # Our own writes are not changes: a second run finds nothing to do.
    wait_past_the_servers_second()
    again_to, again_from = run_modified_sync_from_admin(
        admin_client, customer, django_capture_on_commit_callbacks, rq_worker
    )
    assert (again_to.inserted, again_to.modified, again_to.failed) == (0, 0, 0)
    assert (again_from.inserted, again_from.modified, again_from.failed) == (0, 0, 0)

    # A change on either side reaches the other side.
    from sandbox.testing import edit_as_another_user

    coupling = couplings.first()
    edit_as_another_user("bc", "customers", coupling.bc_id, city="Zwolle")
    other = couplings.exclude(pk=coupling.pk).first()
    edit_as_another_user("dataverse", "accounts", other.dataverse_id, telephone1="555-0199")
    wait_past_the_servers_second()

    third_to, third_from = run_modified_sync_from_admin(
        admin_client, customer, django_capture_on_commit_callbacks, rq_worker
    )
    assert (third_to.modified, third_from.modified) == (1, 1)
    accounts = {row["accountid"]: row for row in all_rows(dataverse, "accounts")}
    customers = {row["id"]: row for row in all_rows(bc, "customers")}
    assert accounts[str(coupling.dataverse_id)]["address1_city"] == "Zwolle"
    assert customers[str(other.bc_id)]["phoneNumber"] == "555-0199"


def test_synchronize_now_leaves_selected_records_outside_the_mappings_filter_alone(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    from jobs.services import sync_enqueue

    bc, dataverse = sandbox_connections
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    blocked = all_rows(bc, "customers", filter="blocked ne ' '")
    unblocked = all_rows(bc, "customers", filter="blocked eq ' '")
    assert blocked and unblocked
    selected = [blocked[0]["id"], unblocked[0]["id"]]
    with django_capture_on_commit_callbacks(execute=True):
        (job,) = sync_enqueue(mapping=customer, kind="records", direction="to_dataverse", record_ids=selected)
    rq_worker()
    job.refresh_from_db()
    assert (job.status, job.inserted) == (JobStatus.SUCCEEDED, 1)
    names = {row["name"] for row in all_rows(dataverse, "accounts")}
    assert unblocked[0]["displayName"] in names
    assert Coupling.objects.filter(bc_id=blocked[0]["id"]).count() == 0
