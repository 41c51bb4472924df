"""Deletions carried over later, end to end (issue 16): a skipped deletion un-skipped when its target record changes,
a retried deletion dropped when its source record exists again, a record another mapping keeps listed as kept, and
records waiting out a back-off counted as such.

Through the services, an RQ job and a real worker; both systems are the sandbox over HTTP.
"""

import pytest
from django.urls import reverse

from connectors.http import override_transport
from coupling.models import Coupling, KeptRecord
from jobs.choices import ErrorState, JobKind, JobStatus
from jobs.models import SyncError
from mappings.choices import DeletionPolicy
from sandbox.testing import clear_faults, delete_keeping_a_copy, edit_as_another_user, restore_as_another_user
from tests.jobs import test_deletions as deletions
from tests.jobs.test_deletions import (
    BC_DELETED,
    DV_DELETED,
    a_coupling,
    assert_counts_add_up,
    back_off_passes,
    delete,
    exists,
    job_of,
    make_bc_check_due,
    run,
    run_one,
    set_policy,
    shared_coupling,
)
from tests.jobs.test_sync_rules import FaultOnEveryWrite

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

# The fixtures of the deletion tests: CUSTOMER coupled after a first run, one record deleted, two companies.
coupled, delete_one, two_companies = deletions.coupled, deletions.delete_one, deletions.two_companies

ENTITY = {BC_DELETED: ("bc", "customers", "bc_id"), DV_DELETED: ("dataverse", "accounts", "dataverse_id")}


def other_side(side: str) -> str:
    return DV_DELETED if side == BC_DELETED else BC_DELETED


def direction_of(side: str) -> str:
    """The direction whose source is the system where the record was deleted."""
    return "to_dataverse" if side == BC_DELETED else "from_dataverse"


def edit_other(side: str, coupling: Coupling, phone: str) -> None:
    """Someone changes the coupled record in the system where nothing was deleted."""
    if side == BC_DELETED:
        edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1=phone)
    else:
        edit_as_another_user("bc", "customers", coupling.bc_id, phoneNumber=phone)


def the_other_record(connections, side: str, coupling: Coupling):
    service, entity_set, attr = ENTITY[other_side(side)]
    connection = connections[1] if service == "dataverse" else connections[0]
    return connection, entity_set, getattr(coupling, attr)


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_a_skipped_deletion_is_un_skipped_when_its_other_record_changes_and_tried_again_in_that_run(
    side, coupled, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """The other record changed since our last sync, so its deletion is refused (a deletion conflict) twice and
    skipped; a later run leaves it alone. Then someone changes that record again: the next run un-skips the deletion
    by itself (logged on its error) and tries it again in that same run. The record changed since our last sync
    still, so it is not deleted blindly: a new failure, counted from one again, not skipped."""
    direction = direction_of(side)
    coupling = a_coupling(coupled)
    edit_other(side, coupling, "+1 555 0100")
    delete_one(side, DeletionPolicy.PROPAGATE, coupling=coupling)
    runs = []
    for _ in range(3):
        make_bc_check_due(coupled)
        runs.append(run_one(coupled, direction, django_capture_on_commit_callbacks, rq_worker))
    assert [j.failed for j in runs] == [1, 1, 0], [j.message for j in runs]
    coupling.refresh_from_db()
    assert coupling.skipped and coupling.skipped_target_etag  # the version the refusal saw
    (skipped_error,) = SyncError.objects.open().filter(table_mapping=coupled, direction=direction)
    assert "skipped after 2 identical failure(s)" in skipped_error.detail

    edit_other(side, coupling, "+1 555 0101")
    again = run_one(coupled, direction, django_capture_on_commit_callbacks, rq_worker)

    label = "Dataverse" if side == BC_DELETED else "Business Central"
    skipped_error.refresh_from_db()
    assert f"un-skipped automatically: its {label} record was changed." in skipped_error.detail
    assert skipped_error.state == ErrorState.SUPERSEDED
    assert again.failed == 1, again.message  # tried in the run that un-skipped it, not the one after
    (new_error,) = SyncError.objects.open().filter(table_mapping=coupled, direction=direction)
    assert new_error.job_id == again.pk and new_error.error_class == "deletion_conflict"
    coupling.refresh_from_db()
    assert not coupling.skipped and coupling.deleted_in == side
    assert coupling.failures_to_dataverse + coupling.failures_from_dataverse == 1  # the skip policy counts anew
    assert exists(*the_other_record(sandbox_connections, side, coupling))
    for job in [*runs, again]:
        assert_counts_add_up(job)


@pytest.mark.parametrize("side", [BC_DELETED, DV_DELETED])
def test_a_retried_deletion_whose_record_was_restored_deletes_nothing_and_the_pair_stays_coupled(
    side, coupled, sandbox_connections, sandbox_http, django_capture_on_commit_callbacks, rq_worker
):
    """Two coupled records are deleted; deleting their partners fails transiently (503), so both wait for a retry.
    Before it, one of them is restored under its id. The retry deletes the partner of the one still gone, and not
    the restored one's: its error closes with the reason, and the pair is coupled and synchronized again."""
    service, entity_set, attr = ENTITY[side]
    direction = direction_of(side)
    set_policy(coupled, side, DeletionPolicy.PROPAGATE)
    restored, gone = Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("bc_name")[:2]
    copy = delete_keeping_a_copy(service, entity_set, getattr(restored, attr))
    delete(side, gone)
    make_bc_check_due(coupled)
    target_service = "dataverse" if side == BC_DELETED else "bc"
    with override_transport(FaultOnEveryWrite(sandbox_http, "503", service=target_service)):
        first = run_one(coupled, direction, django_capture_on_commit_callbacks, rq_worker)
    clear_faults()
    assert first.failed == 2, first.message
    errors = {e.bc_id if side == BC_DELETED else e.dataverse_id: e for e in SyncError.objects.filter(job=first)}
    assert len(errors) == 2

    restore_as_another_user(service, entity_set, copy)
    back_off_passes(coupled)
    retry = run_one(coupled, direction, django_capture_on_commit_callbacks, rq_worker)

    assert retry.status == JobStatus.SUCCEEDED, retry.message
    assert retry.deleted == 1 and retry.failed == 0, retry.message
    assert not exists(*the_other_record(sandbox_connections, side, gone))
    assert not Coupling.objects.filter(pk=gone.pk).exists()
    # The restored record's partner was not deleted, and the pair is live: coupled, nothing pending, synchronized.
    assert exists(*the_other_record(sandbox_connections, side, restored))
    restored.refresh_from_db()
    assert restored.deleted_in == "" and not restored.skipped
    assert restored.last_result(direction) == "success" and getattr(restored, f"last_job_{direction}") == retry.pk
    error = errors[getattr(restored, attr)]
    error.refresh_from_db()
    assert error.state == ErrorState.RESOLVED_BY_SYNC and error.resolved_by_job_id == retry.pk
    assert "exists again" in error.detail
    assert "exist again" in retry.message
    assert not SyncError.objects.open().filter(table_mapping=coupled, direction=direction).exists()
    assert_counts_add_up(first)
    assert_counts_add_up(retry)


def test_propagate_records_a_target_kept_because_another_mapping_couples_it(
    two_companies, delete_one, sandbox_connections, django_capture_on_commit_callbacks, rq_worker, admin_client
):
    """Company A's customer is deleted; its account is also company B's customer's partner, so it is kept and only
    A's coupling goes. It is recorded as kept uncoupled, with the mapping that holds it, so the list of records kept
    uncoupled says why it survived (and A's reverse runs, were it in their scope, do not recreate the customer)."""
    _, dataverse = sandbox_connections
    customer_a, customer_b = two_companies
    coupling = shared_coupling(customer_a, customer_b)
    delete_one(BC_DELETED, DeletionPolicy.PROPAGATE, coupling=coupling, mapping=customer_a)

    jobs = run(customer_a, django_capture_on_commit_callbacks, rq_worker)
    job = job_of(jobs, BC_DELETED)

    assert (job.deleted, job.uncoupled) == (0, 1), job.message
    assert "listed under Records kept uncoupled" in job.message
    mark = KeptRecord.objects.get(table_mapping=customer_a, record_id=coupling.dataverse_id)
    assert mark.side == "dataverse" and mark.job_id == job.pk
    assert "CUSTOMER (Sandbox Business Central Canada) still couples this record" in mark.reason
    page = admin_client.get(reverse("admin:coupling_keptrecord_changelist")).content.decode()
    assert mark.record_name and mark.record_name in page and "still couples this record" in page
    assert exists(dataverse, "accounts", coupling.dataverse_id)
    for each in jobs:
        assert_counts_add_up(each)


def test_records_waiting_out_a_back_off_are_counted_as_waiting_to_retry_and_the_counts_add_up(
    coupled, delete_one, sandbox_connections, sandbox_http, django_capture_on_commit_callbacks, rq_worker, admin_client
):
    """Three records fail transiently (503 on every write to Dataverse): two updates and a deletion. Within their
    back-off one of the updated records changes again, and a run reads it: the run leaves all three for later, and
    counts them as waiting to retry, so its records read still equal the sum of its outcomes; the job page shows
    them, as does a preview."""
    first, second, deleted = Coupling.objects.filter(table_mapping=coupled, pending=False).order_by("bc_name")[:3]
    for coupling, phone in ((first, "+1 555 0120"), (second, "+1 555 0121")):
        edit_as_another_user("bc", "customers", coupling.bc_id, phoneNumber=phone)
    delete_one(BC_DELETED, DeletionPolicy.PROPAGATE, coupling=deleted)
    with override_transport(FaultOnEveryWrite(sandbox_http, "503", service="dataverse")):
        failing = run_one(coupled, "to_dataverse", django_capture_on_commit_callbacks, rq_worker)
    clear_faults()
    assert failing.failed == 3 and failing.waiting == 0, failing.message
    edit_as_another_user("bc", "customers", first.bc_id, phoneNumber="+1 555 0122")  # read again by the next run

    waiting = run_one(coupled, "to_dataverse", django_capture_on_commit_callbacks, rq_worker)

    assert (waiting.waiting, waiting.failed, waiting.modified, waiting.deleted) == (3, 0, 0, 0), waiting.message
    assert waiting.unchanged == waiting.records_read - 3  # the others it read since the watermark: nothing to do
    assert ("waiting to retry", 3) in waiting.outcomes
    assert_counts_add_up(failing)
    assert_counts_add_up(waiting)
    page = admin_client.get(reverse("admin:jobs_syncjob_progress", args=[waiting.pk])).content.decode()
    assert "Waiting to retry" in page and '<td class="syncjob-waiting">3</td>' in page
    assert "do not add up" not in page
    # Nothing was written meanwhile: the records and the deletion are all still to do.
    for coupling in (first, second, deleted):
        assert Coupling.objects.filter(pk=coupling.pk).exists()

    before = waiting.pk
    with django_capture_on_commit_callbacks(execute=True):
        from jobs.services import sync_enqueue

        sync_enqueue(mapping=coupled, kind=JobKind.MODIFIED, direction="to_dataverse", dry_run=True)
    rq_worker()
    (preview,) = coupled.sync_jobs.filter(pk__gt=before)
    assert preview.status == JobStatus.SUCCEEDED, preview.message
    # The preview leaves the two records for later as the run does (the deletion's retry it does not preview).
    assert preview.preview["counts"].get("waiting") == 2, preview.preview
    assert_counts_add_up(preview)
