"""The start page says "healthy" only when nothing needs doing: after a real run that partly failed it says so, with
the open errors the run left, and the figures match the job and the error list."""

import re

import pytest
from django.urls import reverse

from jobs.choices import JobKind, JobStatus
from jobs.models import ScheduleState, SyncError
from jobs.services import sync_jobs_create, sync_jobs_run
from mappings.models import TableMapping

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"]), pytest.mark.usefixtures("sandbox_connections")]


def customer_row(client) -> tuple[str, str, str]:
    """CUSTOMER's health on the start page: (data-health, badge, reason)."""
    html = client.get(reverse("admin:index")).content.decode()
    row = re.search(r'<tr data-mapping="CUSTOMER"(.*?)</tr>', html, flags=re.S).group(0)
    health = re.search(r'data-health="(\w+)"', row).group(1)
    badge = r'class="ops-health[^"]*">([^<]*)</span>'
    badge, reason = re.search(badge + r'<div class="ops-quiet">([^<]*)</div>', row).groups()
    return health, badge, reason


def run_to_dataverse(mapping):
    (job,) = sync_jobs_create(mapping=mapping, kind=JobKind.MODIFIED, direction="to_dataverse")
    sync_jobs_run(job_ids=[job.pk])
    job.refresh_from_db()
    return job


@pytest.fixture
def customer():
    """CUSTOMER one way, scheduled and due again (so a clean run reads as healthy), creating what is missing."""
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.direction = "to_dataverse"
    mapping.sync_only_coupled = False
    mapping.save()
    # Every customer has a currency, not every one a salesperson: with only the salesperson lookup, some fail.
    mapping.field_mappings.filter(lookup_mapping__isnull=False).exclude(lookup_mapping__name="SALESPEOPLE").update(
        enabled=False
    )
    mapping.schedule.enabled = True
    mapping.schedule.state = ScheduleState.READY
    mapping.schedule.save()
    return mapping


def test_a_partly_failed_run_with_open_errors_is_not_called_healthy(admin_client, customer, sandbox_connections):
    from sandbox import testing as sandbox
    from tests.jobs.test_preview_chain import all_rows

    # Salespeople not coupled yet: the customers that have one fail (missing dependency); two without one go through.
    bc, _ = sandbox_connections
    for row in all_rows(bc, "customers")[:2]:
        sandbox.edit_as_another_user("bc", "customers", row["id"], salespersonCode="")
    job = run_to_dataverse(customer)
    assert job.status == JobStatus.PARTLY_FAILED and 0 < job.failed < job.records_read
    open_errors = SyncError.objects.open().filter(table_mapping=customer).count()
    assert open_errors == job.failed

    health, badge, reason = customer_row(admin_client)

    assert (health, badge) == ("attention", "needs attention")
    assert "healthy" not in reason
    assert f"the last run to dataverse partly failed ({job.failed} of {job.records_read} records failed)" in reason
    assert f"{open_errors} open errors" in reason

    # The errors closed (here by hand, as the error list's "mark resolved" does) and a clean run: healthy again.
    SyncError.objects.open().filter(table_mapping=customer).close("resolved_by_hand")
    customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    clean = run_to_dataverse(customer)
    assert clean.status == JobStatus.SUCCEEDED and not SyncError.objects.open().filter(table_mapping=customer).exists()
    assert customer_row(admin_client)[:2] == ("healthy", "healthy")
