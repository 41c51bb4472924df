"""Reconciliation, end to end: started from the mapping list, counted by a real worker against the sandbox over HTTP,
shown on its result page, and each bulk action on its findings carried out by the jobs it queues."""

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import Reconciliation, SyncJob
from jobs.reconciliation.services import reconciliations_run_due
from jobs.services import sync_enqueue
from mappings.choices import DeletionPolicy
from mappings.models import TableMapping
from sandbox.testing import create_as_another_user, delete_as_another_user, edit_as_another_user

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture
def coupled(customer, sandbox_connections, django_capture_on_commit_callbacks, rq_worker):
    """CUSTOMER after a first run (everything under the filters coupled), matching records by name."""
    customer.field_mappings.filter(bc_field="displayName").update(use_for_matching=True)
    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(mapping=customer)
    rq_worker()
    assert all(j.status == JobStatus.SUCCEEDED for j in SyncJob.objects.all())
    return customer


def reconcile_from_admin(admin_client, mapping, capture, rq_worker) -> Reconciliation:
    with capture(execute=True):
        response = admin_client.post(
            reverse("admin:mappings_tablemapping_changelist"),
            {"action": "reconcile", "_selected_action": [mapping.pk]},
            follow=True,
        )
    assert "reconciliation queued" in response.content.decode()
    rq_worker()
    reconciliation = Reconciliation.objects.filter(table_mapping=mapping).latest("pk")
    assert reconciliation.status == JobStatus.SUCCEEDED, reconciliation.message
    return reconciliation


def action(admin_client, name, reconciliation, capture, rq_worker):
    with capture(execute=True):
        response = admin_client.post(
            reverse("admin:jobs_reconciliation_changelist"),
            # Confirmed, as the action's confirmation page posts it (tests/jobs/test_reconciliation_confirmations.py).
            {"action": name, "_selected_action": [reconciliation.pk], "confirm": "yes"},
            follow=True,
        )
    assert response.status_code == 200
    rq_worker()
    return response.content.decode()


def count(connection, entity_set, flt):
    with open_client(connection) as client:
        return client.count(entity_set, filter=flt)


def make_drift(dataverse, coupling: Coupling, **values) -> None:
    """A Dataverse value differs while the coupling says nothing changed since the last sync (as after a write
    whose answer we recorded but whose values did not stick): the coupling takes the row's new version as its own."""
    edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, **values)
    with open_client(dataverse) as client:
        (row,) = client.read_by_ids("accounts", [coupling.dataverse_id], select=["modifiedon"]).values()
    Coupling.objects.filter(pk=coupling.pk).update(
        dataverse_etag=row["@odata.etag"], dataverse_modified_on=row["modifiedon"]
    )


def test_reconciliation_counts_orphans_uncoupled_records_and_drift_and_each_bulk_action_heals_them(
    coupled, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    capture = django_capture_on_commit_callbacks
    clean = reconcile_from_admin(admin_client, coupled, capture, rq_worker)
    coupled_count = Coupling.objects.filter(table_mapping=coupled, pending=False).count()
    assert clean.counts["coupled"] == coupled_count
    assert clean.counts["bc_records"] == count(bc, "customers", coupled.table_filter)
    assert clean.counts["dataverse_records"] == count(dataverse, "accounts", coupled.integration_table_filter)
    assert (clean.counts["orphans"], clean.counts["drift"]) == (0, 0)
    assert clean.counts["drift_checked"] == coupled_count
    base_uncoupled_bc, base_uncoupled_dv = clean.counts["uncoupled_bc"], clean.counts["uncoupled_dataverse"]

    pairs = list(Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("bc_name"))
    bc_gone, dv_gone, both_gone, drifted = pairs[0], pairs[1], pairs[2], pairs[3]
    delete_as_another_user("bc", "customers", bc_gone.bc_id)
    delete_as_another_user("dataverse", "accounts", dv_gone.dataverse_id)
    delete_as_another_user("bc", "customers", both_gone.bc_id)
    delete_as_another_user("dataverse", "accounts", both_gone.dataverse_id)
    make_drift(dataverse, drifted, telephone1="+1 555 0199")
    create_as_another_user("bc", "customers", displayName="Twin Traders", blocked=" ")
    create_as_another_user("dataverse", "accounts", name="Twin Traders", customertypecode=3)
    create_as_another_user("dataverse", "accounts", name="Lonely Row", customertypecode=3)

    found = reconcile_from_admin(admin_client, coupled, capture, rq_worker)

    counts = found.counts
    assert counts["coupled"] == coupled_count
    assert counts["bc_records"] == count(bc, "customers", coupled.table_filter)
    assert counts["dataverse_records"] == count(dataverse, "accounts", coupled.integration_table_filter)
    assert (counts["orphans"], counts["orphans_bc_gone"], counts["orphans_dataverse_gone"]) == (3, 1, 1)
    assert counts["orphans_both_gone"] == 1
    assert (counts["uncoupled_bc"], counts["uncoupled_dataverse"]) == (base_uncoupled_bc + 1, base_uncoupled_dv + 2)
    assert (counts["uncoupled_bc_with_match"], counts["uncoupled_dataverse_with_match"]) == (1, 1)
    assert counts["drift"] == 1
    assert found.findings["drift"] == [{"coupling": drifted.pk, "direction": "to_dataverse", "fields": ["telephone1"]}]
    # Pages of ids, never one request per record.
    assert found.http_requests < 25
    page = admin_client.get(reverse("admin:jobs_reconciliation_change", args=[found.pk])).content.decode()
    assert "Orphan couplings (a partner no longer exists)" in page and "telephone1" in page
    assert 'value="resynchronize_drift"' in page and "Synchronize the drifted pairs again (1)" in page

    # Restore or delete the survivors per the deletion policy: Business Central deletions propagate, Dataverse ones
    # restore the row; the pair gone on both sides is uncoupled.
    TableMapping.objects.filter(pk=coupled.pk).update(
        deletions_to_dataverse=DeletionPolicy.PROPAGATE, deletions_from_dataverse=DeletionPolicy.RESTORE
    )
    said = action(admin_client, "apply_deletion_policy_to_orphans", found, capture, rq_worker)
    assert "the deletion policy is applied" in said
    with open_client(dataverse) as client:
        assert not client.read_by_ids("accounts", [bc_gone.dataverse_id])  # deleted with its partner
        assert client.read_by_ids("accounts", [dv_gone.dataverse_id])  # restored from Business Central
    assert not Coupling.objects.filter(pk__in=[bc_gone.pk, both_gone.pk]).exists()
    assert Coupling.objects.get(pk=dv_gone.pk).pending is False

    # Resynchronize the drifted pair: Business Central's value goes back to Dataverse.
    said = action(admin_client, "resynchronize_drift", found, capture, rq_worker)
    assert "drifted pairs are synchronized" in said
    with open_client(dataverse) as client:
        (row,) = client.read_by_ids("accounts", [drifted.dataverse_id], select=["telephone1"]).values()
    with open_client(bc) as client:
        (bc_row,) = client.read_by_ids("customers", [drifted.bc_id], select=["phoneNumber"]).values()
    assert row["telephone1"] == bc_row["phoneNumber"] != "+1 555 0199"

    # Couple by match: the twins are coupled, the lonely row stays uncoupled.
    said = action(admin_client, "couple_uncoupled_by_match", found, capture, rq_worker)
    assert "match-based coupling" in said
    assert Coupling.objects.filter(
        table_mapping=coupled, bc_name="Twin Traders", dataverse_name="Twin Traders"
    ).exists()

    healed = reconcile_from_admin(admin_client, coupled, capture, rq_worker)
    assert (healed.counts["orphans"], healed.counts["drift"]) == (0, 0)
    assert healed.counts["uncoupled_bc"] == base_uncoupled_bc
    assert healed.counts["uncoupled_dataverse"] == base_uncoupled_dv + 1


def test_uncoupling_orphans_keeps_the_survivors(
    coupled, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    capture = django_capture_on_commit_callbacks
    pair = Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("pk").first()
    delete_as_another_user("bc", "customers", pair.bc_id)
    found = reconcile_from_admin(admin_client, coupled, capture, rq_worker)
    assert found.findings["orphans"] == [[pair.pk, "bc"]]

    said = action(admin_client, "uncouple_orphans", found, capture, rq_worker)

    assert "uncoupling the orphans" in said
    assert not Coupling.objects.filter(pk=pair.pk).exists()
    with open_client(dataverse) as client:
        assert client.read_by_ids("accounts", [pair.dataverse_id])
    job = SyncJob.objects.filter(kind=JobKind.UNCOUPLING).latest("pk")
    assert job.status == JobStatus.SUCCEEDED and job.uncoupled == 1


def test_the_command_reconciles_and_the_schedule_queues_one_a_day(coupled, rq_worker, capsys):
    call_command("reconcile", "CUSTOMER")
    out = capsys.readouterr().out
    assert "CUSTOMER: reconciliation #" in out and "coupled pairs:" in out
    assert Reconciliation.objects.filter(table_mapping=coupled, status=JobStatus.SUCCEEDED).count() == 1

    # Reconciled just now: not due. A day later: queued (and not twice while it waits).
    assert reconciliations_run_due() == 0
    tomorrow = timezone.now() + timezone.timedelta(hours=25)
    due = reconciliations_run_due(now=tomorrow)
    assert due >= 1
    assert Reconciliation.objects.filter(table_mapping=coupled, status=JobStatus.QUEUED, scheduled=True).count() == 1
    reconciliations_run_due(now=tomorrow)
    assert Reconciliation.objects.filter(table_mapping=coupled, status=JobStatus.QUEUED).count() == 1


def test_a_coupled_record_that_left_the_filter_is_no_orphan(
    coupled, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker
):
    """The id pages are read under the mapping's filter; a coupled record not among them is checked for existence
    (a page of ids, no filter) before it is called gone."""
    bc, _ = sandbox_connections
    capture = django_capture_on_commit_callbacks
    before = reconcile_from_admin(admin_client, coupled, capture, rq_worker)
    pair = Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("pk").first()
    edit_as_another_user("bc", "customers", pair.bc_id, blocked="All")

    after = reconcile_from_admin(admin_client, coupled, capture, rq_worker)

    assert after.counts["bc_records"] == before.counts["bc_records"] - 1
    assert after.counts["orphans"] == 0 and after.counts["coupled"] == before.counts["coupled"]
