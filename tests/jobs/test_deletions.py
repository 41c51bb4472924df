"""Deletions, end to end: detected on each system, handled per the mapping's policy in each direction, counted, and
held by the safety stop until an administrator confirms.

Runs go through the services to an RQ job and a real worker; both systems are the sandbox over HTTP. Dataverse
deletions come from change tracking's deleted rows (`$deletedEntity`,
https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems);
Business Central ones from the existence check of the coupled ids (periodic, or after a "deleted" notification).
"""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SubscriptionStatus, SyncError, SyncJob, WebhookSubscription
from jobs.services import sync_enqueue
from mappings.choices import DeletionPolicy
from mappings.models import TableMapping
from sandbox.testing import delete_as_another_user, edit_as_another_user

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

BC_DELETED, DV_DELETED = "bc", "dataverse"


@pytest.fixture
def coupled(customer, sandbox_connections, django_capture_on_commit_callbacks, rq_worker):
    """CUSTOMER after a first run: every customer and account coupled, the Dataverse delta link taken."""
    jobs = run(customer, django_capture_on_commit_callbacks, rq_worker)
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs), [j.message for j in jobs]
    customer.refresh_from_db()
    assert customer.dataverse_delta_link and customer.bc_deletions_checked_at
    return customer


def run(mapping, capture, rq_worker, *, kind=JobKind.MODIFIED):
    before = SyncJob.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with capture(execute=True):
        sync_enqueue(mapping=mapping, kind=kind)
    rq_worker()
    return list(SyncJob.objects.filter(pk__gt=before, table_mapping=mapping).order_by("pk"))


def exists(connection, entity_set, record_id) -> bool:
    with open_client(connection) as client:
        return bool(client.read_by_ids(entity_set, [record_id]))


def a_coupling(mapping) -> Coupling:
    return Coupling.objects.filter(table_mapping=mapping, pending=False).order_by("bc_name").first()


def delete(side: str, coupling: Coupling) -> None:
    if side == BC_DELETED:
        delete_as_another_user("bc", "customers", coupling.bc_id)
    else:
        delete_as_another_user("dataverse", "accounts", coupling.dataverse_id)


def job_of(jobs, side: str) -> SyncJob:
    """The run whose source is the system where the record was deleted."""
    direction = "to_dataverse" if side == BC_DELETED else "from_dataverse"
    return next(j for j in jobs if j.direction == direction and j.kind == JobKind.MODIFIED)


def make_bc_check_due(mapping) -> None:
    """The periodic check of Business Central ids: as if the last one were two hours ago."""
    TableMapping.objects.filter(pk=mapping.pk).update(bc_deletions_checked_at=timezone.now() - timedelta(hours=2))


def set_policy(mapping, side: str, policy: str) -> None:
    field = "deletions_to_dataverse" if side == BC_DELETED else "deletions_from_dataverse"
    TableMapping.objects.filter(pk=mapping.pk).update(**{field: policy, "deletion_safety_percent": 50})
    mapping.refresh_from_db()


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_propagate_deletes_the_other_record_and_the_coupling_and_counts_it(
    side, coupled, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    set_policy(coupled, side, DeletionPolicy.PROPAGATE)
    coupling = a_coupling(coupled)
    delete(side, coupling)
    make_bc_check_due(coupled)

    jobs = run(coupled, django_capture_on_commit_callbacks, rq_worker)

    job = job_of(jobs, side)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.deleted == 1
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
    assert not exists(bc, "customers", coupling.bc_id)
    assert not exists(dataverse, "accounts", coupling.dataverse_id)
    # The other run saw nothing deleted; the records read add up without the deletion.
    other = next(j for j in jobs if j is not job)
    assert other.deleted == 0
    assert job.inserted + job.modified + job.unchanged + job.skipped + job.failed == job.progress_done


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_uncouple_keeps_the_other_record(
    side, coupled, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    set_policy(coupled, side, DeletionPolicy.UNCOUPLE)
    coupling = a_coupling(coupled)
    delete(side, coupling)
    make_bc_check_due(coupled)

    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), side)

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert (job.deleted, job.uncoupled) == (1, 1)
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
    survivor = (
        (dataverse, "accounts", coupling.dataverse_id) if side == BC_DELETED else (bc, "customers", coupling.bc_id)
    )
    assert exists(*survivor)


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_restore_recreates_the_deleted_record_from_the_other_one(
    side, coupled, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    set_policy(coupled, side, DeletionPolicy.RESTORE)
    coupling = a_coupling(coupled)
    delete(side, coupling)
    make_bc_check_due(coupled)

    jobs = run(coupled, django_capture_on_commit_callbacks, rq_worker)

    job = job_of(jobs, side)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.deleted == 1
    (restore,) = [j for j in jobs if j.kind == JobKind.RECORDS]
    assert restore.status == JobStatus.SUCCEEDED, restore.message
    assert restore.inserted == 1
    assert restore.direction != job.direction
    coupling.refresh_from_db()
    assert not coupling.pending
    assert exists(bc, "customers", coupling.bc_id) and exists(dataverse, "accounts", coupling.dataverse_id)
    if side == DV_DELETED:
        with open_client(dataverse) as client:
            (row,) = client.read_by_ids("accounts", [coupling.dataverse_id], select=["name"]).values()
        assert row["name"] == coupling.bc_name  # recreated under its old id with the surviving record's values
    else:
        with open_client(bc) as client:
            (row,) = client.read_by_ids("customers", [coupling.bc_id], select=["displayName"]).values()
        assert row["displayName"] == coupling.dataverse_name


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_report_keeps_both_the_record_and_the_coupling_and_logs_the_deletion(
    side, coupled, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    set_policy(coupled, side, DeletionPolicy.REPORT)
    coupling = a_coupling(coupled)
    delete(side, coupling)
    make_bc_check_due(coupled)

    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), side)

    assert job.deleted == 1
    assert Coupling.objects.filter(pk=coupling.pk).exists()
    survivor = (
        (dataverse, "accounts", coupling.dataverse_id) if side == BC_DELETED else (bc, "customers", coupling.bc_id)
    )
    assert exists(*survivor)
    (error,) = SyncError.objects.filter(job=job)
    assert error.error_class == "deletion_conflict" and "was deleted" in error.message
    assert (error.bc_id, error.dataverse_id) == (coupling.bc_id, coupling.dataverse_id)


def test_propagation_does_not_delete_a_record_changed_since_the_last_sync(
    coupled, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    set_policy(coupled, DV_DELETED, DeletionPolicy.PROPAGATE)
    coupling = a_coupling(coupled)
    edit_as_another_user("bc", "customers", coupling.bc_id, phoneNumber="+1 555 0100")
    delete(DV_DELETED, coupling)
    # Only the Dataverse run: the Business Central change must not be carried first.
    before = SyncJob.objects.order_by("-pk").values_list("pk", flat=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(mapping=coupled, kind=JobKind.MODIFIED, direction="from_dataverse")
    rq_worker()
    (job,) = SyncJob.objects.filter(pk__gt=before)

    assert exists(bc, "customers", coupling.bc_id)  # If-Match with our last sync's ETag: 412, not deleted
    assert Coupling.objects.filter(pk=coupling.pk).exists()
    assert job.failed == 1 and "changed since the last synchronization" in job.errors.get().message


def test_the_safety_stop_deletes_nothing_then_confirming_carries_the_deletions_out(
    coupled, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    TableMapping.objects.filter(pk=coupled.pk).update(deletions_from_dataverse=DeletionPolicy.PROPAGATE)
    coupled.refresh_from_db()
    total = Coupling.objects.filter(table_mapping=coupled, pending=False).count()
    victims = list(Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("pk")[:2])
    assert total * 0.05 < 2  # two deletions are more than 5% of this small table
    for coupling in victims:
        delete(DV_DELETED, coupling)

    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), DV_DELETED)

    assert job.status == JobStatus.FAILED
    assert "2 coupled Dataverse records were deleted" in job.message and "Nothing was deleted" in job.message
    assert job.deleted == 0
    assert all(exists(bc, "customers", c.bc_id) for c in victims)
    assert Coupling.objects.filter(pk__in=[c.pk for c in victims]).count() == 2
    assert sorted(job.held_deletions) == sorted(str(c.dataverse_id) for c in victims)
    # It keeps waiting: the next run stops again (the delta link did not move on).
    again = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), DV_DELETED)
    assert again.status == JobStatus.FAILED and again.held_deletions == job.held_deletions

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:jobs_syncjob_changelist"),
            {"action": "confirm_held_deletions", "_selected_action": [job.pk], "confirm": "yes"},
            follow=True,
        )
    assert "Confirmed 2 deletion(s)" in response.content.decode()
    rq_worker()

    confirmed = SyncJob.objects.get(kind=JobKind.DELETIONS)
    assert confirmed.status == JobStatus.SUCCEEDED, confirmed.message
    assert confirmed.deleted == 2
    assert not any(exists(bc, "customers", c.bc_id) for c in victims)
    assert not Coupling.objects.filter(pk__in=[c.pk for c in victims]).exists()
    # Confirmed once only; and the runs go on as before.
    job.refresh_from_db()
    assert job.deletions_confirmed_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:jobs_syncjob_changelist"),
            {"action": "confirm_held_deletions", "_selected_action": [job.pk], "confirm": "yes"},
            follow=True,
        )
    assert "confirmed already" in response.content.decode()
    after = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), DV_DELETED)
    assert after.status == JobStatus.SUCCEEDED and after.deleted == 0


def test_confirming_needs_the_run_sync_permission(coupled, client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_syncjob"))
    job = SyncJob.objects.create(
        table_mapping=coupled, direction="from_dataverse", status=JobStatus.FAILED, held_deletions=[str(uuid.uuid4())]
    )
    client.force_login(viewer)
    response = client.post(
        reverse("admin:jobs_syncjob_changelist"),
        {"action": "confirm_held_deletions", "_selected_action": [job.pk], "confirm": "yes"},
    )
    assert response.status_code in (200, 302, 403)
    job.refresh_from_db()
    assert job.deletions_confirmed_at is None
    assert not SyncJob.objects.filter(kind=JobKind.DELETIONS).exists()


def test_a_deleted_notification_from_business_central_makes_the_next_run_check_the_coupled_ids(
    coupled, client, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    set_policy(coupled, BC_DELETED, DeletionPolicy.PROPAGATE)
    coupling = a_coupling(coupled)
    delete(BC_DELETED, coupling)
    # Within the check period and without a notification, the deletion is not looked for yet.
    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)
    assert job.deleted == 0 and exists(dataverse, "accounts", coupling.dataverse_id)

    subscription = WebhookSubscription(
        table_mapping=coupled,
        side="business_central",
        status=SubscriptionStatus.ACTIVE,
        notification_url="http://testserver/",
        remote_id="abc",
    )
    subscription.set_secret("the-client-state-of-this-subscription")
    subscription.save()
    body = {
        "value": [
            {
                "subscriptionId": "abc",
                "clientState": "the-client-state-of-this-subscription",
                "resource": f"api/v2.0/companies({uuid.uuid4()})/customers({coupling.bc_id})",
                "changeType": "deleted",
                "lastModifiedDateTime": "2026-11-24T12:00:00.000Z",
            }
        ]
    }
    response = client.post(f"/webhooks/business-central/{subscription.token}/", body, content_type="application/json")
    assert response.status_code == 202
    coupled.refresh_from_db()
    assert coupled.bc_deletion_check_due

    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)
    assert job.deleted == 1
    assert not exists(dataverse, "accounts", coupling.dataverse_id)
    coupled.refresh_from_db()
    assert not coupled.bc_deletion_check_due


def test_an_expired_change_tracking_token_falls_back_to_checking_the_coupled_ids(
    coupled, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """Dataverse refuses a delta token older than its change-tracking retention ("Version stamp associated with the
    client has expired", https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems):
    the run checks the coupled ids instead, finds the deletion, and takes a new delta link."""
    from sandbox.testing import set_change_tracking_days

    bc, dataverse = sandbox_connections
    set_policy(coupled, DV_DELETED, DeletionPolicy.PROPAGATE)
    old_link = coupled.dataverse_delta_link
    coupling = a_coupling(coupled)
    delete(DV_DELETED, coupling)
    set_change_tracking_days(0)

    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), DV_DELETED)

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.deleted == 1
    assert not exists(bc, "customers", coupling.bc_id)
    coupled.refresh_from_db()
    assert coupled.dataverse_delta_link and coupled.dataverse_delta_link != old_link


def test_a_preview_counts_the_deletions_and_handles_none(
    coupled, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker
):
    bc, _ = sandbox_connections
    set_policy(coupled, DV_DELETED, DeletionPolicy.PROPAGATE)
    link = coupled.dataverse_delta_link
    coupling = a_coupling(coupled)
    delete(DV_DELETED, coupling)
    before = SyncJob.objects.order_by("-pk").values_list("pk", flat=True).first()

    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(mapping=coupled, kind=JobKind.MODIFIED, direction="from_dataverse", dry_run=True)
    rq_worker()

    (preview,) = SyncJob.objects.filter(pk__gt=before)
    assert preview.status == JobStatus.SUCCEEDED and preview.preview["counts"]["delete"] == 1
    assert preview.deleted == 0 and exists(bc, "customers", coupling.bc_id)
    coupled.refresh_from_db()
    assert coupled.dataverse_delta_link == link  # the real run still finds it
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[preview.pk])).content.decode()
    assert "Found deleted (deletion policy)" in page
    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), DV_DELETED)
    assert job.deleted == 1 and not exists(bc, "customers", coupling.bc_id)
