"""Option mappings that grow: a Business Central value the value map lacks is appended as a new option of the
Dataverse choice (InsertOptionValue) and to the value map, when the field mapping allows it; otherwise the record
fails with the reason. Real HTTP into the sandbox, real RQ worker."""

import pytest

from connectors.clients import open_client
from connectors.types import WriteOperation
from coupling.models import Coupling
from jobs.models import SyncError, SyncJob
from jobs.services import sync_enqueue
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])
PROJECTS = "contoso/projects/v1.0/projects"
STATUS_MAP = {"Planning": 100000000, "Open": 100000001, "Completed": 100000002}


def _project_mapping(add_missing_options: bool) -> TableMapping:
    mapping = TableMapping.objects.create(
        name="PROJECT",
        bc_entity_set=PROJECTS,
        dataverse_entity_set="cr123_projects",
        dataverse_primary_key="cr123_projectid",
        bc_name_field="description",
        dataverse_name_field="cr123_name",
        direction="to_dataverse",
        sync_only_coupled=False,
    )
    mapping.field_mappings.create(bc_field="description", dataverse_field="cr123_name", direction="to_dataverse")
    mapping.field_mappings.create(
        bc_field="status",
        dataverse_field="cr123_status",
        direction="to_dataverse",
        value_map=STATUS_MAP,
        add_missing_options=add_missing_options,
    )
    return mapping


def _run(mapping, django_capture_on_commit_callbacks, rq_worker) -> SyncJob:
    with django_capture_on_commit_callbacks(execute=True):
        [job] = sync_enqueue(mapping=mapping)
    rq_worker()
    return SyncJob.objects.get(pk=job.pk)


@pytest.fixture
def projects(sandbox_connections):
    with open_client(sandbox_connections[0]) as bc:
        results = bc.write_many(
            [
                WriteOperation("create", PROJECTS, "a", {"description": "Fit-out", "status": "On Hold"}),
                WriteOperation("create", PROJECTS, "b", {"description": "Roof", "status": "Open"}),
            ]
        )
    assert all(r.ok for r in results)
    return sandbox_connections


def test_a_missing_option_is_appended_on_dataverse_and_to_the_value_map(
    projects, django_capture_on_commit_callbacks, rq_worker
):
    """InsertOptionValue appends an option to a local choice and answers its NewOptionValue.
    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/insertoptionvalue
    """
    mapping = _project_mapping(add_missing_options=True)
    job = _run(mapping, django_capture_on_commit_callbacks, rq_worker)
    assert (job.status, job.inserted) == ("succeeded", 2), job.message

    status = mapping.field_mappings.get(bc_field="status")
    assert status.value_map == {**STATUS_MAP, "On Hold": 100000003}  # kept for the next runs
    with open_client(projects[1]) as dataverse:
        info = dataverse.table_info("cr123_projects")
        rows = dataverse.read_by_ids("cr123_projects", [c.dataverse_id for c in Coupling.objects.all()])
    assert info.columns["cr123_status"].options[100000003] == "On Hold"
    assert sorted(r["cr123_status"] for r in rows.values()) == [100000001, 100000003]

    # A second run needs no new option: the map has it now.
    again = _run(mapping, django_capture_on_commit_callbacks, rq_worker)
    assert again.status == "succeeded"
    assert mapping.field_mappings.get(bc_field="status").value_map == status.value_map


def test_without_the_option_the_record_fails_with_the_reason_and_nothing_is_appended(
    projects, django_capture_on_commit_callbacks, rq_worker
):
    mapping = _project_mapping(add_missing_options=False)
    job = _run(mapping, django_capture_on_commit_callbacks, rq_worker)
    assert (job.inserted, job.failed) == (1, 1)
    error = SyncError.objects.get(job=job)
    assert "the value 'On Hold' has no entry in the field mapping's value map" in error.message
    with open_client(projects[1]) as dataverse:
        assert 100000003 not in dataverse.table_info("cr123_projects").columns["cr123_status"].options


def test_insert_option_value_refuses_a_label_already_used(projects):
    """https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/insertoptionvalue"""
    with open_client(projects[1]) as dataverse:
        with pytest.raises(Exception, match="already exists"):
            dataverse.insert_option_value("cr123_projects", "cr123_status", "Open")
        with pytest.raises(Exception, match="not a picklist"):
            dataverse.insert_option_value("cr123_projects", "cr123_name", "x")


def test_a_missing_option_becomes_a_code_of_the_business_central_code_table(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """From Dataverse, an option the value map lacks becomes a record of the Business Central code table (as Business
    Central's option mappings insert payment terms), and the record gets that code. The API page publishes the code
    table at its route. https://learn.microsoft.com/dynamics365/business-central/dev-itpro/developer/devenv-develop-custom-api
    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/insertoptionvalue
    """
    with open_client(sandbox_connections[1]) as dataverse:
        new_type = dataverse.insert_option_value("cr123_projects", "cr123_projecttype", "Roof repair")
        [row] = dataverse.write_many(
            [
                WriteOperation(
                    "create",
                    "cr123_projects",
                    "r",
                    {"cr123_name": "Depot roof", "cr123_status": 100000000, "cr123_projecttype": new_type},
                )
            ]
        )
        assert row.ok, row.error
    mapping = TableMapping.objects.create(
        name="PROJECT_IN",
        bc_entity_set=PROJECTS,
        dataverse_entity_set="cr123_projects",
        dataverse_primary_key="cr123_projectid",
        bc_name_field="description",
        dataverse_name_field="cr123_name",
        direction="from_dataverse",
        sync_only_coupled=False,
    )
    mapping.field_mappings.create(bc_field="description", dataverse_field="cr123_name", direction="from_dataverse")
    mapping.field_mappings.create(
        bc_field="projectTypeCode",
        dataverse_field="cr123_projecttype",
        direction="from_dataverse",
        value_map={"FIT-OUT": 100000000},
        add_missing_options=True,
        bc_code_table="contoso/projects/v1.0/projectTypes",
    )

    job = _run(mapping, django_capture_on_commit_callbacks, rq_worker)

    assert (job.status, job.inserted) == ("succeeded", 1), [e.message for e in job.errors.all()]
    assert mapping.field_mappings.get(bc_field="projectTypeCode").value_map == {
        "FIT-OUT": 100000000,
        "ROOF REPAI": new_type,  # Code[10]: the label cut to the code field's length
    }
    with open_client(sandbox_connections[0]) as bc:
        codes = [r for p in bc.read_pages("contoso/projects/v1.0/projectTypes") for r in p.rows]
        projects = [r for p in bc.read_pages(PROJECTS) for r in p.rows]
    assert [(c["code"], c["description"]) for c in codes] == [("ROOF REPAI", "Roof repair")]
    assert [(p["description"], p["projectTypeCode"]) for p in projects] == [("Depot roof", "ROOF REPAI")]
