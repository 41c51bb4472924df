"""Beyond Business Central: a normal sync couples uncoupled records whose match fields agree, for every mapping
with match criteria (BC does this only for currencies), instead of ignoring them or creating duplicates."""

import pytest

from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.services import sync_enqueue
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def run(mapping_name, django_capture_on_commit_callbacks, rq_worker, **options):
    mapping = TableMapping.objects.get(name=mapping_name)
    with django_capture_on_commit_callbacks(execute=True):
        jobs = sync_enqueue(mapping=mapping, **options)
    rq_worker()
    for job in jobs:
        job.refresh_from_db()
    return jobs


def test_modified_runs_couple_currencies_and_salespeople_by_their_match_fields_then_customers_sync(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    (currency_job,) = run("CURRENCY", django_capture_on_commit_callbacks, rq_worker)
    (salespeople_job,) = run("SALESPEOPLE", django_capture_on_commit_callbacks, rq_worker)

    assert currency_job.status == JobStatus.SUCCEEDED, currency_job.message
    assert currency_job.coupled > 0 and currency_job.inserted == 0
    currency_pairs = Coupling.objects.filter(table_mapping__name="CURRENCY")
    assert currency_pairs.count() == currency_job.coupled
    assert all(c.bc_name and c.dataverse_name for c in currency_pairs)
    assert salespeople_job.coupled > 0 and salespeople_job.failed == 0

    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()
    to_dataverse, _ = run("CUSTOMER", django_capture_on_commit_callbacks, rq_worker)
    assert to_dataverse.failed == 0, list(to_dataverse.errors.values_list("message", flat=True)[:3])
    assert to_dataverse.inserted > 0


def test_a_preview_shows_the_matches_without_coupling_anything(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    (job,) = run("CURRENCY", django_capture_on_commit_callbacks, rq_worker, dry_run=True)
    assert job.status == JobStatus.SUCCEEDED
    assert job.preview["counts"].get("update", 0) + job.preview["counts"].get("unchanged", 0) > 0
    assert not Coupling.objects.filter(table_mapping__name="CURRENCY").exists()
