""" "Synchronize now" on a record whose lookups are not coupled yet: the mappings it depends on synchronize first, in
the same job, instead of the record failing as a missing dependency (as "synchronize modified records" does).

Real RQ worker, real HTTP into the sandbox; the pages are driven through the admin.
"""

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def rows(connection, entity_set, filter=None):
    with open_client(connection) as client:
        return [row for page in client.read_pages(entity_set, filter=filter) for row in page.rows]


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks, rq_worker):
    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            result = action()
        rq_worker()
        return result

    return run


@pytest.fixture
def uncoupled_customer(sandbox_connections):
    """A Business Central customer with a salesperson and a currency, and an account to couple it with; neither
    the salespeople nor the currencies are coupled yet."""
    bc, dataverse = sandbox_connections
    record = next(r for r in rows(bc, "customers", "blocked eq ' '") if r["salespersonCode"] and r["currencyCode"])
    account = rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")[0]
    assert not Coupling.objects.filter(table_mapping__name__in=["SALESPEOPLE", "CURRENCY"]).exists()
    return record, account


def owner_email(sandbox_connections, account_id):
    bc, dataverse = sandbox_connections
    (account,) = rows(dataverse, "accounts", f"accountid eq {account_id}")
    (user,) = rows(dataverse, "systemusers", f"systemuserid eq {account['_ownerid_value']}")
    return user["internalemailaddress"]


def test_couple_then_synchronize_with_its_dependencies_first_in_the_same_job(
    admin_client, sandbox_connections, uncoupled_customer, run_jobs
):
    bc, _ = sandbox_connections
    record, account = uncoupled_customer
    customer = TableMapping.objects.get(name="CUSTOMER")
    url = reverse("admin:mappings_tablemapping_couple", args=[customer.pk])
    page = admin_client.get(url, {"bc": record["id"], "dv": account["accountid"]}).content.decode()
    assert "First synchronize the modified records of CURRENCY, SALESPEOPLE, in the same job" in page

    response = run_jobs(
        lambda: admin_client.post(
            url,
            {"bc": record["id"], "dv": account["accountid"], "sync": "to_dataverse", "dependencies": "1"},
            follow=True,
        )
    )

    assert "Synchronizing now after the modified records of the mappings it depends on" in response.content.decode()
    job = SyncJob.objects.get(table_mapping=customer, kind=JobKind.RECORDS)
    assert (job.status, job.modified, job.failed) == (JobStatus.SUCCEEDED, 1, 0), job.message
    dependencies = SyncJob.objects.exclude(pk=job.pk)
    assert {j.table_mapping.name for j in dependencies} == {"CURRENCY", "SALESPEOPLE"}
    assert {j.rq_job_id for j in SyncJob.objects.all()} == {job.rq_job_id}  # one RQ job, dependencies first
    assert all(j.finished_at <= job.started_at for j in dependencies)
    # What Dataverse holds: the account is owned by the user coupled to the customer's salesperson.
    (salesperson,) = rows(bc, "salespeoplePurchasers", f"code eq '{record['salespersonCode']}'")
    assert owner_email(sandbox_connections, account["accountid"]) == salesperson["email"]


def test_retrying_a_missing_dependency_error_synchronizes_the_dependencies_first(
    admin_client, sandbox_connections, uncoupled_customer, run_jobs
):
    record, account = uncoupled_customer
    customer = TableMapping.objects.get(name="CUSTOMER")
    url = reverse("admin:mappings_tablemapping_couple", args=[customer.pk])
    # The old way: synchronize without its dependencies, which fails on the salesperson not coupled yet.
    run_jobs(lambda: admin_client.post(url, {"bc": record["id"], "dv": account["accountid"], "sync": "to_dataverse"}))
    error = SyncError.objects.get(error_class="missing_dependency")

    run_jobs(
        lambda: admin_client.post(
            reverse("admin:jobs_syncerror_changelist"),
            {"action": "retry_errors", "_selected_action": [error.pk], "confirm": "yes"},
        )
    )

    retry = SyncJob.objects.filter(table_mapping=customer, kind=JobKind.RECORDS).latest("pk")
    assert (retry.status, retry.failed) == (JobStatus.SUCCEEDED, 0), retry.message
    error.refresh_from_db()
    assert error.state == "resolved_by_sync"
    (salesperson,) = rows(sandbox_connections[0], "salespeoplePurchasers", f"code eq '{record['salespersonCode']}'")
    assert owner_email(sandbox_connections, account["accountid"]) == salesperson["email"]


def test_synchronize_now_from_the_coupling_list_runs_the_dependencies_first(
    admin_client, sandbox_connections, uncoupled_customer, run_jobs
):
    record, account = uncoupled_customer
    customer = TableMapping.objects.get(name="CUSTOMER")
    coupling = Coupling.objects.create(table_mapping=customer, bc_id=record["id"], dataverse_id=account["accountid"])

    response = run_jobs(
        lambda: admin_client.post(
            reverse("admin:coupling_coupling_changelist"),
            {"action": "synchronize_to_dataverse", "_selected_action": [coupling.pk]},
            follow=True,
        )
    )

    assert "after the modified records of CURRENCY, SALESPEOPLE" in response.content.decode()
    job = SyncJob.objects.get(table_mapping=customer, kind=JobKind.RECORDS)
    assert (job.status, job.failed) == (JobStatus.SUCCEEDED, 0), job.message
    assert not SyncError.objects.exists()
