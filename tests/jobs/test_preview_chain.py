"""A preview of a chain plans each mapping as if the earlier ones had run: what the real run then does is what the
preview said, compared with the couplings and records the two systems hold afterwards."""

import pytest

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind
from jobs.models import SyncJob
from jobs.services import sync_jobs_create_in_order, sync_jobs_run
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

# The real run's counters that each count of a preview foretells.
FORETOLD = {"insert": "inserted", "update": "modified", "unchanged": "unchanged", "skip": "skipped"}


def chain(mapping, *, dry_run):
    jobs, refused = sync_jobs_create_in_order(
        mappings=[mapping], kind=JobKind.MODIFIED, dry_run=dry_run, with_dependencies=True
    )
    assert not refused
    sync_jobs_run(job_ids=[job.pk for job in jobs])
    return [SyncJob.objects.get(pk=job.pk) for job in jobs]


def all_rows(connection, entity_set):
    with open_client(connection) as client:
        return [row for page in client.read_pages(entity_set) for row in page.rows]


def test_a_preview_of_customer_counts_the_couplings_currency_and_salespeople_would_make_first(sandbox_connections):
    bc, dataverse = sandbox_connections
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()
    accounts_before = len(all_rows(dataverse, "accounts"))

    previews = chain(customer, dry_run=True)
    assert not Coupling.objects.exists()  # a preview writes nothing, not even a coupling
    runs = chain(customer, dry_run=False)

    said = {(p.table_mapping.name, p.direction): p.preview["counts"] for p in previews}
    did = {(r.table_mapping.name, r.direction): r for r in runs}
    assert list(said) == list(did)
    customer_to_dv = said[("CUSTOMER", "to_dataverse")]
    assert customer_to_dv.get("insert", 0) > 0
    for key, counts in said.items():
        run = did[key]
        for preview_key, counter in FORETOLD.items():
            assert counts.get(preview_key, 0) == getattr(run, counter), (key, preview_key, counts, run.counts)
        assert counts.get("fail", 0) + counts.get("conflicts", 0) == run.failed, (key, counts, run.counts)
    # What the run said is what the systems hold: every customer it inserted is an account now, coupled.
    run = did[("CUSTOMER", "to_dataverse")]
    assert run.failed == 0, list(run.errors.values_list("message", flat=True))
    assert len(all_rows(dataverse, "accounts")) == accounts_before + run.inserted
    assert Coupling.objects.filter(table_mapping=customer, pending=False, last_job_to_dataverse=run.pk).count() == (
        run.inserted + run.modified + run.unchanged
    )
