"""Upgrading keeps each coupling's last error, now filed under the direction that failed."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("coupling", "0003_ambiguous_matches_plural")]
AFTER = [("coupling", "0005_remove_coupling_last_error")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def _back_to_the_latest_schema():
    """Each test goes back in history; whatever runs after it, in any order, finds every migration applied."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # leaves the tables as later tests expect
def test_the_single_last_error_moves_to_the_direction_whose_failure_came_last():
    old = migrate(BEFORE)
    mapping = old.get_model("mappings", "TableMapping").objects.get(name="CUSTOMER")
    Coupling = old.get_model("coupling", "Coupling")

    def coupling(**fields):
        return Coupling.objects.create(table_mapping=mapping, bc_id=uuid.uuid4(), **fields).pk

    to_only = coupling(last_result_to_dataverse="failure", last_job_to_dataverse=3, last_error="to failed")
    from_later = coupling(
        last_result_to_dataverse="failure",
        last_job_to_dataverse=3,
        last_result_from_dataverse="failure",
        last_job_from_dataverse=4,
        last_error="from failed last",
    )
    unknown_order = coupling(
        last_result_to_dataverse="failure", last_result_from_dataverse="failure", last_error="one of them"
    )
    succeeded = coupling(last_result_to_dataverse="success", last_error="")

    new = migrate(AFTER)
    errors = {
        row["pk"]: (row["last_error_to_dataverse"], row["last_error_from_dataverse"])
        for row in new.get_model("coupling", "Coupling").objects.values(
            "pk", "last_error_to_dataverse", "last_error_from_dataverse"
        )
    }
    assert errors[to_only] == ("to failed", "")
    assert errors[from_later] == ("", "from failed last")
    assert errors[unknown_order] == ("one of them", "one of them")
    assert errors[succeeded] == ("", "")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # leaves the tables as later tests expect
def test_an_interrupted_reservation_keeps_its_recovery_window_and_ambiguous_sides_take_the_connection_kinds():
    old = migrate([("coupling", "0005_remove_coupling_last_error")])
    mapping = old.get_model("mappings", "TableMapping").objects.get(name="CUSTOMER")
    Coupling = old.get_model("coupling", "Coupling")
    AmbiguousMatch = old.get_model("coupling", "AmbiguousMatch")

    def coupling(**fields):
        return Coupling.objects.create(table_mapping=mapping, **fields)

    # Creating a Business Central customer (it picks the id, so none yet): its direction is From Dataverse.
    interrupted = coupling(pending=True, dataverse_id=uuid.uuid4())
    old_error_elsewhere = coupling(pending=True, dataverse_id=uuid.uuid4(), last_error_to_dataverse="an old failure")
    failed = coupling(pending=True, dataverse_id=uuid.uuid4(), last_error_from_dataverse="could not create")
    # Creating a Dataverse account with the id we chose: its direction is To Dataverse.
    interrupted_in_dataverse = coupling(pending=True, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4())
    failed_in_dataverse = coupling(
        pending=True, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4(), last_error_to_dataverse="refused"
    )
    coupled = coupling(bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4())
    in_bc = AmbiguousMatch.objects.create(table_mapping=mapping, side="bc", record_id=uuid.uuid4()).pk
    in_dataverse = AmbiguousMatch.objects.create(table_mapping=mapping, side="dataverse", record_id=uuid.uuid4()).pk

    new = migrate([("coupling", "0006_coupling_reserved_at_and_side_kinds")])
    reserved = dict(new.get_model("coupling", "Coupling").objects.values_list("pk", "reserved_at"))
    assert reserved[interrupted.pk] == interrupted.created_at
    assert reserved[old_error_elsewhere.pk] == old_error_elsewhere.created_at  # an error of the other direction
    assert reserved[interrupted_in_dataverse.pk] == interrupted_in_dataverse.created_at
    assert reserved[failed.pk] is None and reserved[failed_in_dataverse.pk] is None and reserved[coupled.pk] is None
    sides = dict(new.get_model("coupling", "AmbiguousMatch").objects.values_list("pk", "side"))
    assert sides == {in_bc: "business_central", in_dataverse: "dataverse"}
