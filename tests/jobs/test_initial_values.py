"""A record created from the other system starts with the values that afterwards flow only the other way.

Business Central's credit limit flows only to Dataverse. A customer that syncadmin creates in Business Central from
a Dataverse account must start with the account's credit limit: with Business Central's default (0) instead, the
next full synchronization would overwrite the account's credit limit with 0.
"""

import uuid

import pytest

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncJob
from jobs.services import sync_jobs_create, sync_jobs_run
from sandbox import testing as sandbox

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"])]


def run(mapping, **options):
    jobs = sync_jobs_create(mapping=mapping, **options)
    sync_jobs_run(job_ids=[j.pk for j in jobs])
    jobs = list(SyncJob.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk"))
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs), [(j.status, j.message) for j in jobs]
    return jobs


def test_a_customer_created_from_an_account_starts_with_its_credit_limit_and_a_full_sync_keeps_it(
    sandbox_connections, customer
):
    bc, dataverse = sandbox_connections
    assert customer.field_mappings.get(bc_field="creditLimit").direction == "to_dataverse"
    account = sandbox.create_as_another_user(
        "dataverse", "accounts", name="Credit Line Ltd", customertypecode=3, creditlimit=7500
    )

    run(customer, kind=JobKind.MODIFIED)

    bc_id = Coupling.objects.get(table_mapping=customer, dataverse_id=account).bc_id
    with open_client(bc) as client:
        assert float(client.read_by_ids("customers", [bc_id])[bc_id]["creditLimit"]) == 7500

    (full,) = run(customer, kind=JobKind.FULL, direction="to_dataverse")

    assert full.failed == 0
    with open_client(dataverse) as client:
        assert float(client.read_by_ids("accounts", [uuid.UUID(str(account))])[account]["creditlimit"]) == 7500


def test_a_one_way_field_from_a_read_only_column_is_not_written_when_creating(sandbox_connections, customer):
    """Business Central computes its customers' balance: a customer created from an account gets none written."""
    from mappings.models import FieldMapping

    FieldMapping.objects.create(
        table_mapping=customer, bc_field="balanceDue", dataverse_field="revenue", direction="to_dataverse"
    )
    account = sandbox.create_as_another_user(
        "dataverse", "accounts", name="Revenue Ltd", customertypecode=3, revenue=123456
    )

    _, from_dataverse = run(customer, kind=JobKind.MODIFIED)

    assert from_dataverse.failed == 0
    assert Coupling.objects.filter(table_mapping=customer, dataverse_id=account, pending=False).exists()


def test_a_starting_value_missing_from_a_value_map_is_left_out_not_a_failure(sandbox_connections, customer):
    from mappings.models import FieldMapping

    FieldMapping.objects.create(
        table_mapping=customer,
        bc_field="website",
        dataverse_field="fax",
        direction="from_dataverse",
        value_map={"www.listed.example": "1"},
    )
    bc_id = sandbox.create_as_another_user("bc", "customers", displayName="Unlisted Ltd", website="www.other.example")

    to_dataverse, _ = run(customer, kind=JobKind.MODIFIED)

    assert to_dataverse.failed == 0
    assert Coupling.objects.filter(table_mapping=customer, bc_id=bc_id, pending=False).exists()


def test_a_run_that_creates_nothing_does_not_download_the_targets_metadata(sandbox_connections, customer):
    run(customer, kind=JobKind.MODIFIED)  # couples everything
    sandbox.edit_as_another_user(
        "dataverse",
        "accounts",
        Coupling.objects.filter(table_mapping=customer).first().dataverse_id,
        address1_city="Only an update",
    )

    _, from_dataverse = run(customer, kind=JobKind.MODIFIED)

    assert from_dataverse.modified == 1 and from_dataverse.inserted == 0
    assert "metadata" not in from_dataverse.http_requests_by_kind, from_dataverse.http_requests_by_kind
