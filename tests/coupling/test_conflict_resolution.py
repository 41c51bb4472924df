"""Resolving an update conflict field by field writes through the connectors with If-Match."""

import uuid

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import ErrorClass, JobKind
from jobs.models import SyncError
from jobs.resolution.comparison import records_compare
from jobs.resolution.services import ResolutionFailed, conflict_resolve
from jobs.services import coupling_job_enqueue, sync_enqueue
from mappings.choices import Direction
from mappings.models import FieldMapping, TableMapping
from sandbox import testing as sandbox_testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


class EditsAfterReading:
    """A client that lets someone else change the record right after we read it (the race If-Match guards)."""

    def __init__(self, client, edit):
        self.client, self.edit = client, edit

    def read_by_ids(self, *args, **kwargs):
        found = self.client.read_by_ids(*args, **kwargs)
        self.edit()
        return found

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def conflict(sandbox_connections, django_capture_on_commit_callbacks, rq_worker):
    """A coupled customer whose phone and city changed on both sides since the last sync."""
    bc, dataverse = sandbox_connections
    with django_capture_on_commit_callbacks(execute=True):
        for name in ("CURRENCY", "SALESPEOPLE"):
            coupling_job_enqueue(mapping=TableMapping.objects.get(name=name))
    rq_worker()
    customer = TableMapping.objects.get(name="CUSTOMER")
    with open_client(bc) as client:
        record = next(iter(client.read_pages("customers", filter="blocked eq ' '"))).rows[0]
    # A pending coupling: the records sync creates the Dataverse row under the id chosen here.
    coupling = Coupling.objects.create(
        table_mapping=customer, bc_id=record["id"], dataverse_id=uuid.uuid4(), pending=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(
            mapping=customer, kind=JobKind.RECORDS, direction=Direction.TO_DATAVERSE, record_ids=[record["id"]]
        )
    rq_worker()
    coupling.refresh_from_db()
    sandbox_testing.edit_as_another_user("bc", "customers", coupling.bc_id, phoneNumber="0111", city="Bctown")
    sandbox_testing.edit_as_another_user(
        "dataverse", "accounts", coupling.dataverse_id, telephone1="0222", address1_city="Dvtown"
    )
    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(mapping=customer, kind=JobKind.MODIFIED)
    rq_worker()
    assert SyncError.objects.filter(error_class=ErrorClass.CONFLICT).exists()
    coupling.refresh_from_db()
    return coupling, bc, dataverse


def field_id(bc_field):
    return FieldMapping.objects.get(table_mapping__name="CUSTOMER", bc_field=bc_field).pk


def test_the_comparison_shows_exactly_the_fields_that_differ(conflict):
    coupling, bc, dataverse = conflict
    with open_client(bc) as bc_client, open_client(dataverse) as dv_client:
        comparison = records_compare(
            mapping=coupling.table_mapping,
            bc_id=coupling.bc_id,
            dataverse_id=coupling.dataverse_id,
            bc_client=bc_client,
            dataverse_client=dv_client,
        )
    assert {(f.bc_field, f.bc_value, f.dataverse_value) for f in comparison.differing} == {
        ("phoneNumber", "0111", "0222"),
        ("city", "Bctown", "Dvtown"),
    }


def test_a_record_changed_again_after_reading_is_not_overwritten(conflict):
    coupling, bc, dataverse = conflict
    stored_bc_etag = coupling.bc_etag

    def someone_edits_business_central():
        sandbox_testing.edit_as_another_user("bc", "customers", coupling.bc_id, city="Elsewhere")

    with open_client(bc) as bc_client, open_client(dataverse) as dv_client:
        with pytest.raises(ResolutionFailed, match="reload the page"):
            conflict_resolve(
                coupling=coupling,
                winners={field_id("city"): "dataverse"},
                bc_client=EditsAfterReading(bc_client, someone_edits_business_central),
                dataverse_client=dv_client,
            )
        record = bc_client.read_by_ids("customers", [coupling.bc_id])[coupling.bc_id]
    assert record["city"] == "Elsewhere"  # the other user's change survived
    coupling.refresh_from_db()
    assert coupling.bc_etag == stored_bc_etag  # still seen as changed: the conflict is not hidden


def test_resolving_the_conflict_on_its_page_closes_its_errors_and_both_records_hold_the_chosen_values(
    conflict, admin_client
):
    """The issue's case: after "Resolved: wrote N fields" the record's errors must leave the error list."""
    coupling, bc, dataverse = conflict
    errors = SyncError.objects.filter(
        table_mapping=coupling.table_mapping, bc_id=coupling.bc_id
    ) | SyncError.objects.filter(table_mapping=coupling.table_mapping, dataverse_id=coupling.dataverse_id)
    assert errors.open().exists()
    errors_list = reverse("admin:jobs_syncerror_changelist")
    assert f'value="{errors.open().first().pk}"' in admin_client.get(errors_list).content.decode()

    response = admin_client.post(
        reverse("admin:coupling_coupling_compare", args=[coupling.pk]),
        {"resolve": "1", f"winner_{field_id('phoneNumber')}": "bc", f"winner_{field_id('city')}": "dataverse"},
        follow=True,
    )

    assert "Resolved: wrote" in response.content.decode()
    assert not errors.open().exists()
    assert set(errors.values_list("state", flat=True)) == {"resolved_by_hand"}
    assert 'name="_selected_action"' not in admin_client.get(errors_list).content.decode()
    with open_client(bc) as bc_client, open_client(dataverse) as dv_client:
        bc_row = bc_client.read_by_ids("customers", [coupling.bc_id])[coupling.bc_id]
        dv_row = dv_client.read_by_ids("accounts", [coupling.dataverse_id])[coupling.dataverse_id]
    assert (bc_row["phoneNumber"], bc_row["city"]) == ("0111", "Dvtown")
    assert (dv_row["telephone1"], dv_row["address1_city"]) == ("0111", "Dvtown")


def test_after_a_resolution_by_hand_an_edit_on_one_side_flows_without_a_conflict(
    conflict, django_capture_on_commit_callbacks, rq_worker
):
    """The field fingerprints of the last sync predate the chosen values: they are forgotten, not compared."""
    coupling, bc, dataverse = conflict
    with open_client(bc) as bc_client, open_client(dataverse) as dv_client:
        conflict_resolve(
            coupling=coupling,
            winners={field_id("city"): "dataverse", field_id("phoneNumber"): "bc"},
            bc_client=bc_client,
            dataverse_client=dv_client,
        )
    sandbox_testing.edit_as_another_user("bc", "customers", coupling.bc_id, city="Later")
    errors_before = SyncError.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(mapping=coupling.table_mapping, kind=JobKind.MODIFIED)
    rq_worker()

    assert SyncError.objects.count() == errors_before
    with open_client(dataverse) as dv_client:
        row = dv_client.read_by_ids("accounts", [coupling.dataverse_id])[coupling.dataverse_id]
    assert (row["address1_city"], row["telephone1"]) == ("Later", "0111")
