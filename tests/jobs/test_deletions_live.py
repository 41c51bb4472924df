"""A deletion over a real socket: the sandbox served by the live server, the run by an RQ worker. Dataverse reports
the deleted row in change tracking's delta (`$deletedEntity`,
https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems),
and the mapping's policy deletes its coupled Business Central customer."""

import pytest

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncJob
from jobs.services import sync_enqueue
from mappings.choices import DeletionPolicy
from mappings.models import TableMapping
from sandbox.testing import delete_as_another_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True, databases=["default", "sandbox"])


def test_a_dataverse_deletion_reaches_business_central_over_a_real_socket(live_sandbox_connections, rq_worker):
    bc, _ = live_sandbox_connections
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    TableMapping.objects.filter(pk=mapping.pk).update(
        sync_only_coupled=False, deletions_from_dataverse=DeletionPolicy.PROPAGATE, deletion_safety_percent=50
    )
    mapping.refresh_from_db()
    sync_enqueue(mapping=mapping, kind=JobKind.MODIFIED)
    rq_worker()
    coupling = Coupling.objects.filter(table_mapping=mapping, pending=False).order_by("pk").first()
    delete_as_another_user("dataverse", "accounts", coupling.dataverse_id)

    sync_enqueue(mapping=mapping, kind=JobKind.MODIFIED)
    rq_worker()

    job = SyncJob.objects.filter(table_mapping=mapping, direction="from_dataverse").latest("pk")
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.deleted == 1
    with open_client(bc) as client:
        assert not client.read_by_ids("customers", [coupling.bc_id])
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
