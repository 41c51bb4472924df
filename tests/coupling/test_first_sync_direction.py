"""Coupling a pair by hand "then synchronize to Dataverse": the chosen direction holds until the pair has synced
once, even when that first sync fails (here on a salesperson not coupled yet) and a scheduled run comes next.

Before, the next run saw both records as changed (no version stored yet) and reported an update conflict on every
differing field in both directions. Real RQ worker, real HTTP into the sandbox.
"""

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind
from jobs.models import SyncError, SyncJob
from jobs.services import sync_enqueue
from mappings.models import TableMapping
from sandbox import testing as sandbox

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


def test_the_direction_chosen_when_coupling_holds_after_its_first_sync_failed(
    admin_client, sandbox_connections, run_jobs
):
    bc, dataverse = sandbox_connections
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.field_mappings.filter(lookup_mapping__name="CURRENCY").update(enabled=False)
    record = next(r for r in rows(bc, "customers", "blocked eq ' '") if r["salespersonCode"])
    account = rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")[0]
    sandbox.edit_as_another_user("dataverse", "accounts", account["accountid"], address1_city="Dvtown")
    assert record["city"] != "Dvtown"

    # Couple by hand, then synchronize to Dataverse: fails, the salesperson is not coupled yet.
    url = reverse("admin:mappings_tablemapping_couple", args=[customer.pk])
    run_jobs(lambda: admin_client.post(url, {"bc": record["id"], "dv": account["accountid"], "sync": "to_dataverse"}))
    first = SyncJob.objects.get(table_mapping=customer, kind=JobKind.RECORDS)
    assert first.failed == 1
    assert SyncError.objects.get(job=first).error_class == "missing_dependency"

    # The salespeople get coupled; the next scheduled-style run synchronizes modified records both ways.
    run_jobs(lambda: sync_enqueue(mapping=TableMapping.objects.get(name="SALESPEOPLE")))
    run_jobs(lambda: sync_enqueue(mapping=customer))

    run = SyncJob.objects.filter(table_mapping=customer, kind=JobKind.MODIFIED)
    assert not SyncError.objects.filter(job__in=run).exists(), list(
        SyncError.objects.filter(job__in=run).values_list("message", flat=True)
    )
    to_dataverse = run.get(direction="to_dataverse")
    assert (to_dataverse.modified, to_dataverse.failed) == (1, 0)
    # What the two systems hold: the chosen direction won, Business Central's values are in Dataverse.
    (after,) = rows(dataverse, "accounts", f"accountid eq {account['accountid']}")
    assert after["address1_city"] == record["city"] and after["name"] == record["displayName"]
    (bc_after,) = rows(bc, "customers", f"id eq {record['id']}")
    assert bc_after["city"] == record["city"]
    coupling = Coupling.objects.get(table_mapping=customer, bc_id=record["id"])
    assert coupling.first_sync_direction == ""  # synced once: from now on, changes on either side count

    # And from now on, a change in Dataverse is carried back as usual.
    sandbox.edit_as_another_user("dataverse", "accounts", account["accountid"], address1_city="Later town")
    run_jobs(lambda: sync_enqueue(mapping=customer))
    (bc_after,) = rows(bc, "customers", f"id eq {record['id']}")
    assert bc_after["city"] == "Later town"
