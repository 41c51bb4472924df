"""Upgrading gives the errors saved before errors had a state the state they would have had."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("jobs", "0009_sync_job_crash_recovery"), ("coupling", "0006_coupling_reserved_at_and_side_kinds")]
AFTER = [("jobs", "0010_h13errs_error_states_and_hold_checks")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def _back_to_the_latest_schema():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_newest_error_of_a_record_stays_open_unless_its_coupling_synchronized_since():
    old = migrate(BEFORE)
    mapping = old.get_model("mappings", "TableMapping").objects.get(name="CUSTOMER")
    SyncJob, SyncError = old.get_model("jobs", "SyncJob"), old.get_model("jobs", "SyncError")
    Coupling = old.get_model("coupling", "Coupling")
    jobs = [SyncJob.objects.create(table_mapping=mapping, direction="to_dataverse", status="succeeded") for _ in "123"]

    def error(job, bc_id):
        return SyncError.objects.create(
            job=job, table_mapping=mapping, direction="to_dataverse", bc_id=bc_id, error_class="validation", message="x"
        ).pk

    still_failing, synced_since, resolved_by_hand = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    older, newest = error(jobs[0], still_failing), error(jobs[1], still_failing)
    Coupling.objects.create(
        table_mapping=mapping, bc_id=still_failing, last_result_to_dataverse="failure", last_job_to_dataverse=jobs[1].pk
    )
    fixed = error(jobs[0], synced_since)
    Coupling.objects.create(
        table_mapping=mapping, bc_id=synced_since, last_result_to_dataverse="success", last_job_to_dataverse=jobs[2].pk
    )
    by_hand = error(jobs[1], resolved_by_hand)
    Coupling.objects.create(
        table_mapping=mapping,
        bc_id=resolved_by_hand,
        last_result_to_dataverse="success",
        last_job_to_dataverse=jobs[1].pk,
    )

    new = migrate(AFTER)
    states = dict(new.get_model("jobs", "SyncError").objects.values_list("pk", "state"))

    assert states == {
        older: "superseded",
        newest: "open",
        fixed: "resolved_by_sync",
        by_hand: "resolved_by_hand",
    }
    assert new.get_model("jobs", "SyncError").objects.get(pk=fixed).resolved_by_job_id == jobs[2].pk
