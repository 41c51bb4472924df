"""A reconciliation's bulk actions and confirming held deletions ask first: the page says how many records each will
touch and how, nothing is queued or written before the confirming post, and what the confirmed action then does is
what the page said. Real worker, real HTTP into the sandbox, real database."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import Reconciliation, SyncJob
from mappings.choices import DeletionPolicy
from mappings.models import TableMapping
from sandbox.testing import create_as_another_user, delete_as_another_user
from tests.jobs import test_reconciliation
from tests.jobs.test_bulk_confirmations import as_data, hidden_fields, table
from tests.jobs.test_deletions import DV_DELETED, delete, exists, job_of, run
from tests.jobs.test_reconciliation import make_drift, reconcile_from_admin

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

coupled = test_reconciliation.coupled  # the fixture: CUSTOMER after a first run, matching by name

RECONCILIATIONS = "admin:jobs_reconciliation_changelist"
JOBS = "admin:jobs_syncjob_changelist"


@pytest.fixture
def found(coupled, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker):
    """A reconciliation that found 3 orphans (Business Central record gone, Dataverse row gone, both gone), one
    drifted pair and one uncoupled pair of twins that match by name."""
    _, dataverse = sandbox_connections
    pairs = list(Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("bc_name"))
    delete_as_another_user("bc", "customers", pairs[0].bc_id)
    delete_as_another_user("dataverse", "accounts", pairs[1].dataverse_id)
    delete_as_another_user("bc", "customers", pairs[2].bc_id)
    delete_as_another_user("dataverse", "accounts", pairs[2].dataverse_id)
    make_drift(dataverse, pairs[3], telephone1="+1 555 0199")
    create_as_another_user("bc", "customers", displayName="Twin Traders", blocked=" ")
    create_as_another_user("dataverse", "accounts", name="Twin Traders", customertypecode=3)
    reconciliation = reconcile_from_admin(admin_client, coupled, django_capture_on_commit_callbacks, rq_worker)
    assert reconciliation.counts["orphans"] == 3 and reconciliation.counts["drift"] == 1
    return reconciliation, pairs


def ask(admin_client, url_name, action, selected) -> str:
    """Post an action as the list does (no confirm): the confirmation page, and nothing done."""
    jobs_before, couplings_before = SyncJob.objects.count(), Coupling.objects.count()
    response = admin_client.post(reverse(url_name), {"action": action, "_selected_action": selected})
    html = response.content.decode()
    assert response.status_code == 200 and "are you sure?" in html, html[-2000:]
    assert "csrfmiddlewaretoken" in html
    assert (SyncJob.objects.count(), Coupling.objects.count()) == (jobs_before, couplings_before)
    return html


def confirm(admin_client, url_name, html, capture, rq_worker) -> str:
    with capture(execute=True):
        response = admin_client.post(reverse(url_name), as_data(hidden_fields(html, "bulk-confirm")), follow=True)
    rq_worker()
    return response.content.decode()


def test_uncoupling_the_orphans_says_how_many_and_removes_that_many_when_confirmed(
    found, admin_client, django_capture_on_commit_callbacks, rq_worker
):
    reconciliation, pairs = found
    html = ask(admin_client, RECONCILIATIONS, "uncouple_orphans", [reconciliation.pk])

    assert "Remove 3 coupling(s)" in html and table(html) == [["CUSTOMER", "3"]]
    said = confirm(admin_client, RECONCILIATIONS, html, django_capture_on_commit_callbacks, rq_worker)

    assert "uncoupling the orphans" in said
    assert not Coupling.objects.filter(pk__in=[p.pk for p in pairs[:3]]).exists()
    assert SyncJob.objects.get(kind=JobKind.UNCOUPLING).uncoupled == 3


def test_the_deletion_policy_says_what_it_will_do_to_each_survivor_and_does_that_when_confirmed(
    found,
    coupled,
    sandbox_connections,
    admin_client,
    django_capture_on_commit_callbacks,
    rq_worker,
):
    _, dataverse = sandbox_connections
    reconciliation, pairs = found
    TableMapping.objects.filter(pk=coupled.pk).update(
        deletions_to_dataverse=DeletionPolicy.PROPAGATE, deletions_from_dataverse=DeletionPolicy.RESTORE
    )
    html = ask(admin_client, RECONCILIATIONS, "apply_deletion_policy_to_orphans", [reconciliation.pk])

    rows = table(html)
    assert [
        "CUSTOMER",
        "Business Central record deleted",
        "Delete the other record too",
        "1",
        "delete 1 Dataverse record(s)",
    ] in rows
    assert [
        "CUSTOMER",
        "Dataverse record deleted",
        "Restore the deleted record from the other one",
        "1",
        "restore 1 Dataverse record(s) from Business Central",
    ] in rows
    assert ["CUSTOMER", "deleted in both systems", "-", "1", "uncouple 1 pair(s)"] in rows
    with open_client(dataverse) as client:
        assert client.read_by_ids("accounts", [pairs[0].dataverse_id])  # not deleted before the confirm

    said = confirm(admin_client, RECONCILIATIONS, html, django_capture_on_commit_callbacks, rq_worker)

    assert "the deletion policy is applied" in said
    with open_client(dataverse) as client:
        assert not client.read_by_ids("accounts", [pairs[0].dataverse_id])
        assert client.read_by_ids("accounts", [pairs[1].dataverse_id])
    assert not Coupling.objects.filter(pk__in=[pairs[0].pk, pairs[2].pk]).exists()


def test_resynchronizing_the_drift_and_coupling_by_match_say_how_many_and_do_that_many(
    found,
    coupled,
    admin_client,
    django_capture_on_commit_callbacks,
    rq_worker,
):
    reconciliation, pairs = found
    html = ask(admin_client, RECONCILIATIONS, "resynchronize_drift", [reconciliation.pk])

    assert table(html) == [["CUSTOMER", "To Dataverse", "1"]]
    confirm(admin_client, RECONCILIATIONS, html, django_capture_on_commit_callbacks, rq_worker)
    (resync,) = SyncJob.objects.filter(kind=JobKind.RECORDS)
    assert resync.record_ids == [str(pairs[3].bc_id)] and resync.modified == 1

    html = ask(admin_client, RECONCILIATIONS, "couple_uncoupled_by_match", [reconciliation.pk])

    ((name, would_couple, *_),) = table(html)
    assert name == "CUSTOMER" and int(would_couple) == reconciliation.counts["uncoupled_bc_with_match"] == 1
    before = Coupling.objects.filter(table_mapping=coupled).count()
    confirm(admin_client, RECONCILIATIONS, html, django_capture_on_commit_callbacks, rq_worker)
    assert Coupling.objects.filter(table_mapping=coupled).count() == before + int(would_couple)
    assert Coupling.objects.filter(bc_name="Twin Traders", dataverse_name="Twin Traders").exists()


def test_the_reconciliation_actions_keep_csrf_and_the_run_sync_permission(found, client, django_user_model):
    reconciliation, _ = found
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_reconciliation"))
    client.force_login(viewer)
    couplings = Coupling.objects.count()
    for action in ("uncouple_orphans", "apply_deletion_policy_to_orphans", "resynchronize_drift"):
        data = {"action": action, "_selected_action": [reconciliation.pk], "confirm": "yes"}
        client.post(reverse(RECONCILIATIONS), data)
    assert not SyncJob.objects.filter(kind__in=[JobKind.UNCOUPLING, JobKind.DELETIONS, JobKind.RECORDS]).exists()
    assert Coupling.objects.count() == couplings

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    data = {"action": "uncouple_orphans", "_selected_action": [reconciliation.pk], "confirm": "yes"}
    assert csrf_client.post(reverse(RECONCILIATIONS), data).status_code == 403
    assert not SyncJob.objects.filter(kind=JobKind.UNCOUPLING).exists()
    assert Reconciliation.objects.filter(pk=reconciliation.pk).exists()


def test_confirming_held_deletions_shows_how_many_records_will_be_deleted_and_deletes_them_when_confirmed(
    coupled,
    sandbox_connections,
    admin_client,
    django_capture_on_commit_callbacks,
    rq_worker,
):
    bc, _ = sandbox_connections
    TableMapping.objects.filter(pk=coupled.pk).update(deletions_from_dataverse=DeletionPolicy.PROPAGATE)
    coupled.refresh_from_db()
    victims = list(Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("pk")[:2])
    for coupling in victims:
        delete(DV_DELETED, coupling)
    held = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), DV_DELETED)
    assert held.status == JobStatus.FAILED and len(held.held_deletions) == 2

    html = ask(admin_client, JOBS, "confirm_held_deletions", [held.pk])

    assert "2 record(s)" in html
    assert table(html) == [
        [
            f"#{held.pk}",
            "CUSTOMER",
            "From Dataverse",
            "Delete the other record too",
            "2",
            "delete 2 Business Central record(s)",
        ]
    ]
    held.refresh_from_db()
    assert held.deletions_confirmed_at is None and all(exists(bc, "customers", c.bc_id) for c in victims)

    said = confirm(admin_client, JOBS, html, django_capture_on_commit_callbacks, rq_worker)

    assert "Confirmed 2 deletion(s)" in said
    deletions = SyncJob.objects.get(kind=JobKind.DELETIONS)
    assert deletions.status == JobStatus.SUCCEEDED and deletions.deleted == 2
    assert not any(exists(bc, "customers", c.bc_id) for c in victims)
