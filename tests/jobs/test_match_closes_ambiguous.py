"""Errors are a current state: a match-based coupling job that couples a record, or finds it matching no record any
more, closes that record's open "ambiguous match" errors (resolved by the job); a record still ambiguous keeps its."""

import pytest
from django.urls import reverse

from coupling.models import Coupling
from jobs.choices import ErrorClass, ErrorState, JobStatus
from jobs.models import SyncError
from jobs.services import coupling_job_enqueue, sync_enqueue
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture
def customer(sandbox_connections):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.sync_only_coupled = False
    mapping.sync_after_match_coupling = False
    mapping.create_new_if_no_match = False
    mapping.save()
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    mapping.field_mappings.filter(bc_field="displayName").update(use_for_matching=True)
    return mapping


def test_the_match_job_closes_the_ambiguous_errors_of_the_records_it_settles(
    customer, django_capture_on_commit_callbacks, rq_worker, admin_client
):
    from sandbox import testing as sandbox

    # Three customers, each matching two accounts by name: the run couples none of them and says so, three times.
    twins = {}
    for name in ("Twin Trading", "Double Goods", "Pair Partners"):
        bc_id = sandbox.create_as_another_user("bc", "customers", displayName=name)
        accounts = [
            sandbox.create_as_another_user("dataverse", "accounts", name=name, customertypecode=3) for _ in range(2)
        ]
        twins[name] = (bc_id, accounts)
    with django_capture_on_commit_callbacks(execute=True):
        (run,) = sync_enqueue(mapping=customer, direction="to_dataverse")
    rq_worker()
    run.refresh_from_db()
    errors = {
        name: SyncError.objects.get(job=run, bc_id=bc_id, error_class=ErrorClass.AMBIGUOUS_MATCH)
        for name, (bc_id, _) in twins.items()
    }
    assert all(error.state == ErrorState.OPEN for error in errors.values())

    # Then one twin account goes (Twin Trading matches one now), both go (Double Goods matches none), or none
    # (Pair Partners stays ambiguous); the match-based coupling job runs.
    sandbox.delete_as_another_user("dataverse", "accounts", twins["Twin Trading"][1][1])
    for account in twins["Double Goods"][1]:
        sandbox.delete_as_another_user("dataverse", "accounts", account)
    with django_capture_on_commit_callbacks(execute=True):
        job = coupling_job_enqueue(mapping=customer)
    rq_worker()
    job.refresh_from_db()
    assert job.status in (JobStatus.SUCCEEDED, JobStatus.PARTLY_FAILED), job.message

    twin_bc, twin_accounts = twins["Twin Trading"]
    assert Coupling.objects.filter(table_mapping=customer, bc_id=twin_bc, dataverse_id=twin_accounts[0]).exists()
    for error in errors.values():
        error.refresh_from_db()
    assert (errors["Twin Trading"].state, errors["Twin Trading"].resolved_by_job_id) == (
        ErrorState.RESOLVED_BY_SYNC,
        job.pk,
    )
    assert errors["Double Goods"].state == ErrorState.RESOLVED_BY_SYNC
    assert errors["Pair Partners"].state == ErrorState.OPEN  # still two accounts of its name

    # The error list (open errors, by default) shows what is wrong now: only the record still ambiguous.
    listed = admin_client.get(reverse("admin:jobs_syncerror_changelist"), {"table_mapping": customer.pk})
    html = listed.content.decode()
    assert "Pair Partners" in html and "Twin Trading" not in html and "Double Goods" not in html
