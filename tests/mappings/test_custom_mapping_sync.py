"""A mapping of a custom Business Central API page to a custom Dataverse table synchronizes like the defaults: its
filter, a preview that writes nothing, match-based coupling on its match fields, and conflicts (real HTTP into the
sandbox, real RQ worker)."""

import pytest

from connectors.clients import open_client
from connectors.types import WriteOperation
from coupling.models import Coupling
from jobs.models import SyncError, SyncJob
from jobs.services import sync_enqueue
from mappings.models import TableMapping
from sandbox import testing as sandbox

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])
PROJECTS = "contoso/projects/v1.0/projects"


def _run(mapping, django_capture_on_commit_callbacks, rq_worker, **options) -> list[SyncJob]:
    with django_capture_on_commit_callbacks(execute=True):
        jobs = sync_enqueue(mapping=mapping, **options)
    rq_worker()
    return [SyncJob.objects.get(pk=job.pk) for job in jobs]


def _dataverse_projects(connection) -> dict[str, dict]:
    with open_client(connection) as dataverse:
        return {r["cr123_name"]: r for page in dataverse.read_pages("cr123_projects") for r in page.rows}


def test_filter_preview_matching_and_conflicts_on_a_custom_mapping(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc_connection, dataverse_connection = sandbox_connections
    with open_client(bc_connection) as bc:
        results = bc.write_many(
            [
                WriteOperation("create", PROJECTS, "a", {"description": "Fit-out", "status": "Open"}),
                WriteOperation("create", PROJECTS, "b", {"description": "Roof", "status": "Open"}),
                WriteOperation("create", PROJECTS, "c", {"description": "Draft idea", "status": "Planning"}),
            ]
        )
    assert all(r.ok for r in results)
    with open_client(dataverse_connection) as dataverse:  # Roof exists on Dataverse already, by its number
        [existing] = dataverse.write_many(
            [WriteOperation("create", "cr123_projects", "r", {"cr123_name": "Roof (CRM)", "cr123_number": "PRJ00020"})]
        )
    mapping = TableMapping.objects.create(
        name="PROJECT",
        bc_entity_set=PROJECTS,
        dataverse_entity_set="cr123_projects",
        dataverse_primary_key="cr123_projectid",
        bc_name_field="description",
        dataverse_name_field="cr123_name",
        table_filter="status eq 'Open'",
        sync_only_coupled=False,
    )
    mapping.field_mappings.create(bc_field="description", dataverse_field="cr123_name")
    mapping.field_mappings.create(bc_field="number", dataverse_field="cr123_number", use_for_matching=True)

    [preview, _] = _run(mapping, django_capture_on_commit_callbacks, rq_worker, dry_run=True)
    assert preview.status == "succeeded", preview.message
    assert preview.preview["counts"].get("insert") == 1, preview.preview  # Fit-out; Roof matches; the draft is out
    assert set(_dataverse_projects(dataverse_connection)) == {"Roof (CRM)"}  # a preview writes nothing

    to_dataverse, _ = _run(mapping, django_capture_on_commit_callbacks, rq_worker)
    assert to_dataverse.status == "succeeded", [e.message for e in to_dataverse.errors.all()]
    rows = _dataverse_projects(dataverse_connection)
    assert set(rows) == {"Fit-out", "Roof"}  # the filter left the draft out; Roof was coupled, not created again
    roof = Coupling.objects.get(table_mapping=mapping, dataverse_id=existing.record_id)
    assert rows["Roof"]["cr123_number"] == "PRJ00020"

    sandbox.edit_as_another_user("bc", "projects", roof.bc_id, description="Roof, phase 2")
    sandbox.edit_as_another_user("dataverse", "cr123_projects", roof.dataverse_id, cr123_name="Roof (renamed)")
    to_dataverse, from_dataverse = _run(mapping, django_capture_on_commit_callbacks, rq_worker)
    assert (to_dataverse.failed, from_dataverse.failed) == (1, 1)  # no policy: a conflict, neither side overwritten
    assert SyncError.objects.filter(job=to_dataverse).get().error_class == "conflict"
    assert "Roof (renamed)" in _dataverse_projects(dataverse_connection)
