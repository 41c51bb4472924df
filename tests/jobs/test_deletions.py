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
from jobs.choices import JobKind, JobStatus, RequestedVia
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


def run(mapping, capture, rq_worker, *, kind=JobKind.MODIFIED, via=RequestedVia.USER):
    before = SyncJob.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with capture(execute=True):
        sync_enqueue(mapping=mapping, kind=kind, via=via)
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


@pytest.fixture
def delete_one(coupled):
    """Set the policy for deletions in `side` (safety stop at 50%), delete one coupled record there, make the periodic
    Business Central check due; returns the coupling of the deleted record."""

    def delete_one(side: str, policy: str, coupling: Coupling | None = None, mapping=None) -> Coupling:
        mapping = mapping or coupled
        set_policy(mapping, side, policy)
        coupling = coupling or a_coupling(mapping)
        delete(side, coupling)
        make_bc_check_due(mapping)
        return coupling

    return delete_one


def an_open_error(mapping, coupling: Coupling, direction: str) -> SyncError:
    """An earlier run's error about this record, still open."""
    return SyncError.objects.create(
        job=SyncJob.objects.filter(table_mapping=mapping).earliest("pk"),
        table_mapping=mapping,
        direction=direction,
        bc_id=coupling.bc_id,
        dataverse_id=coupling.dataverse_id,
        error_class="validation",
        message="An earlier failure of this record.",
    )


def assert_counts_add_up(job: SyncJob) -> None:
    """The job page's equation (SyncJob.counts_reconcile): records read = the sum of their outcomes."""
    assert job.counts_reconcile, (job.records_read, job.outcomes)


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_propagate_deletes_the_other_record_and_the_coupling_and_counts_it(
    side, coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    from jobs.choices import ErrorState

    bc, dataverse = sandbox_connections
    earlier = an_open_error(coupled, a_coupling(coupled), "from_dataverse")
    coupling = delete_one(side, DeletionPolicy.PROPAGATE)

    jobs = run(coupled, django_capture_on_commit_callbacks, rq_worker)

    job = job_of(jobs, side)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.deleted == 1
    earlier.refresh_from_db()  # nothing is wrong any more with a pair that is gone
    assert (earlier.state, earlier.resolved_by_job_id) == (ErrorState.RESOLVED_BY_SYNC, job.pk)
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
    assert not exists(bc, "customers", coupling.bc_id)
    assert not exists(dataverse, "accounts", coupling.dataverse_id)
    # The other run saw nothing deleted; the deleted record is one of the records read, and they add up.
    other = next(j for j in jobs if j is not job)
    assert other.deleted == 0
    assert job.records_read >= 1
    assert_counts_add_up(job)
    assert_counts_add_up(other)


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_uncouple_keeps_the_other_record(
    side, coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    coupling = delete_one(side, DeletionPolicy.UNCOUPLE)

    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), side)

    assert job.status == JobStatus.SUCCEEDED, job.message
    # One outcome per record: uncoupled (nothing was deleted by the run), not counted as deleted too.
    assert (job.deleted, job.uncoupled) == (0, 1)
    assert_counts_add_up(job)
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
    survivor = (
        (dataverse, "accounts", coupling.dataverse_id) if side == BC_DELETED else (bc, "customers", coupling.bc_id)
    )
    assert exists(*survivor)


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_restore_recreates_the_deleted_record_from_the_other_one(
    side, coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    coupling = delete_one(side, DeletionPolicy.RESTORE)

    jobs = run(coupled, django_capture_on_commit_callbacks, rq_worker, via=RequestedVia.SCHEDULE)

    job = job_of(jobs, side)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.deleted == 1
    (restore,) = [j for j in jobs if j.kind == JobKind.RECORDS]
    assert restore.status == JobStatus.SUCCEEDED, restore.message
    assert restore.inserted == 1
    assert restore.direction != job.direction
    # Started by whoever started the run that found the deletion (here the schedule), not "not recorded".
    assert restore.requester == job.requester == "The schedule"
    assert_counts_add_up(job)
    assert_counts_add_up(restore)
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
    side, coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    bc, dataverse = sandbox_connections
    coupling = delete_one(side, DeletionPolicy.REPORT)

    job = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), side)

    assert job.deleted == 1
    assert_counts_add_up(job)
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
    assert_counts_add_up(job)


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
    assert_counts_add_up(job)
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
    assert_counts_add_up(confirmed)
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


# -- a company's deletion and the other companies' couplings, error states, repeated checks, confirmed deletions -----

SECOND = "Sandbox Business Central Canada"


@pytest.fixture
def two_companies(customer, sandbox_connections, django_capture_on_commit_callbacks, rq_worker):
    """Company A (the existing connection; CUSTOMER) and company B (CRONUS Canada, with its own default mappings), one
    Dataverse, after a first run of each: B's CUSTOMER is multi-company and matched A's 3 shared customers to the
    accounts A coupled, so those accounts are coupled by both companies' mappings (issue 17)."""
    from connectors.models import Connection
    from mappings.defaults import create_default_mappings
    from sandbox import services as sandbox

    bc_a, dataverse = sandbox_connections
    sandbox.seed_second_company(customers=4, shared=3)
    bc_b = Connection.objects.get(pk=bc_a.pk)
    bc_b.pk = None
    bc_b.name = SECOND
    bc_b.bc_company_id = sandbox.second_company_id()
    bc_b.save()
    TableMapping.objects.filter(company__isnull=True).update(company=bc_a)
    create_default_mappings(company=bc_b)
    customer_b = TableMapping.objects.get(name="CUSTOMER", company=bc_b)
    customer_b.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    for mapping in (customer, customer_b):  # each couples the seed's shared accounts by name, creating none twice
        mapping.field_mappings.filter(bc_field="displayName", dataverse_field="name").update(use_for_matching=True)
    customer_b.sync_only_coupled = False
    customer_b.table_filter = ""
    customer_b.direction = "to_dataverse"
    customer_b.multi_company = True
    customer_b.save()
    TableMapping.objects.filter(pk=customer.pk).update(table_filter="")  # the shared customers, blocked or not
    customer.refresh_from_db()
    for mapping in (customer, customer_b):
        jobs = run(mapping, django_capture_on_commit_callbacks, rq_worker)
        assert all(j.status == JobStatus.SUCCEEDED for j in jobs), [list(j.errors.values_list("message")) for j in jobs]
    customer.refresh_from_db()
    customer_b.refresh_from_db()
    return customer, customer_b


def shared_coupling(customer_a, customer_b) -> Coupling:
    """A's coupling of an account B's mapping couples too."""
    held = Coupling.objects.filter(table_mapping=customer_b).values_list("dataverse_id", flat=True)
    return Coupling.objects.filter(table_mapping=customer_a, dataverse_id__in=held).order_by("bc_name").first()


def test_propagate_keeps_a_row_another_mapping_still_couples_and_only_uncouples_this_one(
    two_companies, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """A customer of company A is deleted; its account is also company B's customer (a multi-company mapping):
    deleting the account would take B's customer's partner away. Only A's coupling goes; the run says why."""
    bc, dataverse = sandbox_connections
    customer_a, customer_b = two_companies
    coupling = shared_coupling(customer_a, customer_b)
    held_by_b = Coupling.objects.get(table_mapping=customer_b, dataverse_id=coupling.dataverse_id)
    delete_one(BC_DELETED, DeletionPolicy.PROPAGATE, coupling=coupling, mapping=customer_a)

    job = job_of(run(customer_a, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)

    assert job.status == JobStatus.SUCCEEDED, job.message
    assert exists(dataverse, "accounts", coupling.dataverse_id)
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
    assert Coupling.objects.filter(pk=held_by_b.pk).exists()
    assert (job.deleted, job.uncoupled) == (0, 1)
    assert "still coupled by CUSTOMER (Sandbox Business Central Canada)" in job.message, job.message
    assert_counts_add_up(job)


def test_deletion_policies_uncouple_as_uncoupling_does_clearing_the_company_and_closing_the_records_errors(
    two_companies, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """Uncoupled by the deletion policy (uncouple; propagate kept by another mapping), a Dataverse row stamped with the
    company loses the stamp (or passes to the company still coupling it), as after uncoupling by hand, and the
    record's open errors close: nothing is wrong with a pair that is no longer one."""
    from jobs.choices import ErrorState
    from sandbox import rows, schema
    from sandbox.models import row_model

    customer_a, customer_b = two_companies
    kept = shared_coupling(customer_a, customer_b)
    alone = (
        Coupling.objects.filter(table_mapping=customer_a)
        .exclude(dataverse_id__in=Coupling.objects.filter(table_mapping=customer_b).values("dataverse_id"))
        .order_by("bc_name")
        .first()
    )
    errors = [an_open_error(customer_a, kept, "to_dataverse"), an_open_error(customer_a, alone, "from_dataverse")]
    accounts = row_model(schema.table("dataverse", "accounts")).objects.using(rows.DB)
    company_row = str(customer_a.company.dataverse_company_id)
    assert {accounts.get(rid=str(c.dataverse_id)).bcbi_companyid for c in (kept, alone)} == {company_row}

    delete_one(BC_DELETED, DeletionPolicy.PROPAGATE, coupling=kept, mapping=customer_a)
    job = job_of(run(customer_a, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)
    assert job.uncoupled == 1, job.message
    delete_one(BC_DELETED, DeletionPolicy.UNCOUPLE, coupling=alone, mapping=customer_a)
    job = job_of(run(customer_a, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)
    assert job.uncoupled == 1, job.message

    # The row B still couples passes to B (left with no company, every company would read it again); the other
    # belongs to no company.
    customer_b.company.refresh_from_db()
    assert accounts.get(rid=str(kept.dataverse_id)).bcbi_companyid == str(customer_b.company.dataverse_company_id)
    assert accounts.get(rid=str(alone.dataverse_id)).bcbi_companyid is None
    for error in errors:
        error.refresh_from_db()
        assert error.state != ErrorState.OPEN, error.message
        assert error.resolved_by_job_id is not None


def test_report_keeps_one_open_error_per_deleted_record_across_periodic_checks(
    coupled, delete_one, django_capture_on_commit_callbacks, rq_worker
):
    coupling = delete_one(BC_DELETED, DeletionPolicy.REPORT)
    first = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)
    make_bc_check_due(coupled)
    second = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)

    open_errors = SyncError.objects.open().filter(table_mapping=coupled, direction="to_dataverse", bc_id=coupling.bc_id)
    assert open_errors.count() == 1
    assert open_errors.get().error_class == "deletion_conflict"
    assert Coupling.objects.filter(pk=coupling.pk).exists()
    # Reported once: the second check found nothing new to report.
    assert (first.deleted, second.deleted) == (1, 0)
    assert_counts_add_up(first)
    assert_counts_add_up(second)


def test_confirmed_deletions_take_the_deletion_path_for_the_held_records_only(
    two_companies, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker
):
    """Two deletions in company A are held (more than 5%); one more customer is deleted before the administrator
    confirms. The confirmation carries out the two it counted, by the same rules as a run: the account B still
    couples is kept, the other is deleted; the third deletion is left to the next run (and its own safety stop)."""
    bc, dataverse = sandbox_connections
    customer_a, customer_b = two_companies
    TableMapping.objects.filter(pk=customer_a.pk).update(
        deletions_to_dataverse=DeletionPolicy.PROPAGATE, deletion_safety_percent=5
    )
    kept = shared_coupling(customer_a, customer_b)
    shared = Coupling.objects.filter(table_mapping=customer_b).values("dataverse_id")
    gone, later = Coupling.objects.filter(table_mapping=customer_a).exclude(dataverse_id__in=shared).order_by("pk")[:2]
    for coupling in (kept, gone):
        delete(BC_DELETED, coupling)
    make_bc_check_due(customer_a)
    held = job_of(run(customer_a, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)
    assert held.status == JobStatus.FAILED and len(held.held_deletions) == 2, held.message
    delete(BC_DELETED, later)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:jobs_syncjob_changelist"),
            {"action": "confirm_held_deletions", "_selected_action": [held.pk], "confirm": "yes"},
            follow=True,
        )
    assert "Confirmed 2 deletion(s)" in response.content.decode()
    rq_worker()

    confirmed = SyncJob.objects.get(kind=JobKind.DELETIONS)
    assert confirmed.status == JobStatus.SUCCEEDED, confirmed.message
    assert (confirmed.deleted, confirmed.uncoupled) == (1, 1)
    assert_counts_add_up(confirmed)
    assert exists(dataverse, "accounts", kept.dataverse_id)  # B's customer still has its partner
    assert Coupling.objects.filter(table_mapping=customer_b, dataverse_id=kept.dataverse_id).exists()
    assert not exists(dataverse, "accounts", gone.dataverse_id)
    assert not Coupling.objects.filter(pk__in=[kept.pk, gone.pk]).exists()
    # Not among the confirmed: untouched.
    assert exists(dataverse, "accounts", later.dataverse_id)
    assert Coupling.objects.filter(pk=later.pk).exists()


def test_a_failed_propagation_found_again_by_the_next_check_keeps_one_open_error(
    coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """The coupled account changed since our last sync, so it is not deleted; the coupling stays, so each periodic
    check finds the deletion again and tries again: a failure each time, counted, the newer error replacing the
    older."""
    bc, dataverse = sandbox_connections
    coupling = a_coupling(coupled)
    edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+1 555 0100")
    delete_one(BC_DELETED, DeletionPolicy.PROPAGATE, coupling=coupling)
    runs = []
    for _ in range(2):
        make_bc_check_due(coupled)
        before = SyncJob.objects.order_by("-pk").values_list("pk", flat=True).first()
        with django_capture_on_commit_callbacks(execute=True):
            sync_enqueue(mapping=coupled, kind=JobKind.MODIFIED, direction="to_dataverse")
        rq_worker()
        (job,) = SyncJob.objects.filter(pk__gt=before)
        runs.append(job)

    assert exists(dataverse, "accounts", coupling.dataverse_id)
    assert [(j.failed, j.deleted) for j in runs] == [(1, 0), (1, 0)]
    for job in runs:
        assert_counts_add_up(job)
    (still_open,) = SyncError.objects.open().filter(table_mapping=coupled, bc_id=coupling.bc_id)
    assert still_open.job_id == runs[1].pk and "changed since the last synchronization" in still_open.message


def test_restore_without_the_reverse_direction_reports_the_deletion_once(
    coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    _, dataverse = sandbox_connections
    TableMapping.objects.filter(pk=coupled.pk).update(direction="to_dataverse")
    coupling = delete_one(BC_DELETED, DeletionPolicy.RESTORE)
    first = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)
    make_bc_check_due(coupled)
    second = job_of(run(coupled, django_capture_on_commit_callbacks, rq_worker), BC_DELETED)

    assert exists(dataverse, "accounts", coupling.dataverse_id) and Coupling.objects.filter(pk=coupling.pk).exists()
    (error,) = SyncError.objects.open().filter(table_mapping=coupled, bc_id=coupling.bc_id)
    assert "policy is to restore it, but the mapping does not synchronize" in error.message
    assert (first.deleted, second.deleted) == (1, 0)
    assert not SyncJob.objects.filter(kind=JobKind.RECORDS).exists()
    assert_counts_add_up(first)
    assert_counts_add_up(second)


def back_off_passes(mapping) -> None:
    """As if the back-off of the mapping's transient failures had ended."""
    SyncError.objects.open().filter(table_mapping=mapping).exclude(next_retry_at=None).update(
        next_retry_at=timezone.now() - timedelta(seconds=1)
    )


def run_one(mapping, direction, capture, rq_worker) -> SyncJob:
    before = SyncJob.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with capture(execute=True):
        sync_enqueue(mapping=mapping, kind=JobKind.MODIFIED, direction=direction)
    rq_worker()
    (job,) = SyncJob.objects.filter(pk__gt=before)
    return job


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_a_propagation_failing_transiently_is_retried_by_later_runs_until_the_deletion_lands(
    side, coupled, delete_one, sandbox_connections, sandbox_http, django_capture_on_commit_callbacks, rq_worker
):
    """503 on every delete sent to the other system: the deletion is not lost (a Dataverse deletion is read from the
    delta once; a Business Central one is found again only by the next periodic check), but tried again by each
    later run once its back-off has passed, never skipped, until it lands."""
    from connectors.http import override_transport
    from sandbox.testing import clear_faults
    from tests.jobs.test_sync_rules import FaultOnEveryWrite

    bc, dataverse = sandbox_connections
    coupling = delete_one(side, DeletionPolicy.PROPAGATE)
    direction = "to_dataverse" if side == BC_DELETED else "from_dataverse"
    other = (dataverse, "accounts", coupling.dataverse_id) if side == BC_DELETED else (bc, "customers", coupling.bc_id)
    target_service = "dataverse" if side == BC_DELETED else "bc"

    jobs = []
    with override_transport(FaultOnEveryWrite(sandbox_http, "503", service=target_service)):
        for _attempt in (1, 2):
            jobs.append(run_one(coupled, direction, django_capture_on_commit_callbacks, rq_worker))
            # Within the back-off, a run does not try again.
            jobs.append(run_one(coupled, direction, django_capture_on_commit_callbacks, rq_worker))
            back_off_passes(coupled)
    clear_faults()
    assert exists(*other)
    assert [(j.deleted, j.failed) for j in jobs] == [(0, 1), (0, 0), (0, 1), (0, 0)], [j.message for j in jobs]
    coupling.refresh_from_db()
    assert coupling.deleted_in == side and not coupling.skipped  # transient: never skipped
    (error,) = SyncError.objects.open().filter(table_mapping=coupled, direction=direction)
    assert error.error_class == "transient" and error.retry_attempt == 2 and error.job_id == jobs[2].pk

    last = run_one(coupled, direction, django_capture_on_commit_callbacks, rq_worker)

    assert (last.deleted, last.failed) == (1, 0), last.message
    assert not exists(*other)
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
    error.refresh_from_db()
    assert error.state == "resolved_by_sync"
    for job in [*jobs, last]:
        assert_counts_add_up(job)


def test_a_deletion_refused_the_same_way_twice_is_skipped_and_not_tried_again(
    coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """A permanent failure (here the account changed since our last sync, so the delete's If-Match fails) follows
    the skip policy: skipped after 2 identical failures, then neither the retries nor the periodic check try it."""
    _, dataverse = sandbox_connections
    coupling = a_coupling(coupled)
    edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="+1 555 0100")
    delete_one(BC_DELETED, DeletionPolicy.PROPAGATE, coupling=coupling)
    runs = []
    for _ in range(3):
        make_bc_check_due(coupled)  # the periodic check finds it again each time too
        runs.append(run_one(coupled, "to_dataverse", django_capture_on_commit_callbacks, rq_worker))

    assert [(j.failed, j.deleted) for j in runs] == [(1, 0), (1, 0), (0, 0)]
    coupling.refresh_from_db()
    assert coupling.skipped and coupling.deleted_in == BC_DELETED
    (error,) = SyncError.objects.open().filter(table_mapping=coupled, bc_id=coupling.bc_id)
    assert error.job_id == runs[1].pk and "skipped after 2 identical failure(s)" in error.detail
    assert exists(dataverse, "accounts", coupling.dataverse_id)
    for job in runs:
        assert_counts_add_up(job)


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_uncouple_keeps_the_other_record_without_recreating_the_deleted_one_in_either_direction(
    side, coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker, admin_client
):
    """An administrator who chooses "uncouple and keep the other record" wants the deletion to stand: on a
    bidirectional mapping the reverse direction must not insert the kept record, now uncoupled, back into the system
    it was deleted in; not after it changes, nor in a full synchronization. A "synchronize now" of it still does."""
    from coupling.models import KeptRecord

    bc, dataverse = sandbox_connections
    assert coupled.direction == "bidirectional" and not coupled.sync_only_coupled
    coupling = delete_one(side, DeletionPolicy.UNCOUPLE)
    kept_attr, kept_id = ("dataverse_id", coupling.dataverse_id) if side == BC_DELETED else ("bc_id", coupling.bc_id)
    kept = (dataverse, "accounts", kept_id) if side == BC_DELETED else (bc, "customers", kept_id)

    jobs = run(coupled, django_capture_on_commit_callbacks, rq_worker)
    assert job_of(jobs, side).uncoupled == 1
    if side == BC_DELETED:  # the kept record changes later, as records do
        edit_as_another_user("dataverse", "accounts", kept_id, telephone1="+1 555 0111")
    else:
        edit_as_another_user("bc", "customers", kept_id, phoneNumber="+1 555 0111")
    jobs += run(coupled, django_capture_on_commit_callbacks, rq_worker)
    jobs += run(coupled, django_capture_on_commit_callbacks, rq_worker, kind=JobKind.FULL)

    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * len(jobs), [j.message for j in jobs]
    assert sum(j.inserted for j in jobs) == 0
    assert exists(*kept) and not Coupling.objects.filter(table_mapping=coupled, **{kept_attr: kept_id}).exists()
    mark = KeptRecord.objects.get(table_mapping=coupled, record_id=kept_id)
    assert "was deleted" in mark.reason and "uncouple and keep" in mark.reason
    # Why it is kept shows with it, under Couplings > Records kept uncoupled.
    page = admin_client.get(reverse("admin:coupling_keptrecord_changelist")).content.decode()
    assert mark.record_name and mark.record_name in page and "uncouple and keep the other record" in page
    for job in jobs:
        assert_counts_add_up(job)

    # Someone chooses otherwise: "synchronize now" on the kept record creates its partner and couples them.
    back = "from_dataverse" if side == BC_DELETED else "to_dataverse"
    with django_capture_on_commit_callbacks(execute=True):
        (now,) = sync_enqueue(mapping=coupled, kind=JobKind.RECORDS, direction=back, record_ids=[str(kept_id)])
    rq_worker()
    now.refresh_from_db()
    assert now.inserted == 1, now.message
    assert Coupling.objects.filter(table_mapping=coupled, pending=False, **{kept_attr: kept_id}).exists()
