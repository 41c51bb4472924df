"""An incremental run's cost follows the records changed, not the records coupled (issue 18: 100 changed among
1,000,000 coupled in under a second). The same run, with the same few changes, among ten times more coupled records
makes the same database queries and the same requests."""

import re

import pytest
from django.db import connection

from coupling.models import Coupling
from jobs.models import SyncJob
from jobs.services import sync_jobs_create, sync_jobs_run
from mappings.models import TableMapping
from sandbox import services as sandbox_services
from sandbox.testing import edit_as_another_user

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

CHANGED = 3


def run(mapping, kind):
    jobs = sync_jobs_create(mapping=mapping, kind=kind)
    sync_jobs_run(job_ids=[j.pk for j in jobs])
    return SyncJob.objects.get(pk=jobs[0].pk)


def incremental_cost(mapping, customers):
    """Seed `customers` customers into an empty sandbox, couple them all (full sync), settle the watermark and change
    CHANGED of them; the incremental run's queries and requests."""
    sandbox_services.seed_demo(customers=customers, accounts=0, shared=0, reset=True)
    Coupling.objects.all().delete()
    SyncJob.objects.all().delete()
    TableMapping.objects.filter(pk=mapping.pk).update(bc_watermark=None, dataverse_watermark=None)
    full = run(mapping, "full")
    assert full.inserted == customers
    assert full.status == "succeeded", full.message
    run(mapping, "modified")  # settles the watermark after the full synchronization
    bc_ids = Coupling.objects.filter(table_mapping=mapping).order_by("pk").values_list("bc_id", flat=True)
    for i, bc_id in enumerate(bc_ids[:CHANGED]):
        edit_as_another_user("bc", "customers", bc_id, city=f"Changed {i}")

    statements = []

    def record(execute, sql, params, many, context):
        statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        job = run(mapping, "modified")
    assert job.status == "succeeded", job.message
    assert job.modified == CHANGED
    return statements, job.http_requests


@pytest.fixture
def customer_mapping(sandbox_http, make_sandbox_connections):
    make_sandbox_connections("http://testserver", page_size=1000)
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.direction = "to_dataverse"
    mapping.table_filter = ""  # every customer, blocked ones too: the coupled count is the seeded count
    mapping.save()
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    return mapping


def test_an_incremental_run_costs_the_same_among_ten_times_more_coupled_records(customer_mapping):
    mapping = customer_mapping
    few_queries, few_requests = incremental_cost(mapping, 20)
    many_queries, many_requests = incremental_cost(mapping, 200)

    assert Coupling.objects.filter(table_mapping=mapping).count() == 200
    assert len(many_queries) == len(few_queries), (
        f"{len(few_queries)} queries among 20 coupled, {len(many_queries)} among 200"
    )
    assert many_requests == few_requests


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="PostgreSQL plans tables of a few rows by cost alone (any index, or a scan): no sign of its plan at scale",
)
def test_no_query_of_an_incremental_run_reads_every_coupling(customer_mapping):
    """The same number of queries is not enough: one of them could read every coupling of the mapping, which a
    million couplings make slow (finding the deletions still carried over did: 0.24 s of B's 0.77 s at 1,000,000).
    Every query of the run that reads couplings must narrow them down through an index by more than the mapping,
    as SQLite plans it (its plan depends on the indexes, not on the rows there are)."""
    statements, _ = incremental_cost(customer_mapping, 20)
    reads = [(sql, params) for sql, params in statements if sql.lstrip().upper().startswith("SELECT")]
    reads = [(sql, params) for sql, params in reads if '"coupling_coupling"' in sql]
    assert reads, "the run read no couplings: the test would prove nothing"

    every_coupling = []
    with connection.cursor() as cursor:
        for sql, params in reads:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = "\n".join(row[-1] for row in cursor.fetchall())
            if reads_the_whole_mapping(plan):
                every_coupling.append(f"{sql}\n  {plan}")
    assert every_coupling == [], "\n\n".join(every_coupling)


# `x IS NOT NULL` on an indexed column shows as the range `x>?`: no narrower than the mapping.
WHOLE_MAPPING = re.compile(r"table_mapping_id=\?(?: AND (?:bc_id|dataverse_id)>\?)?")


def reads_the_whole_mapping(plan: str) -> bool:
    """Whether SQLite's plan reads the couplings table whole, or all of one mapping's couplings: a scan, or an index
    searched by the mapping alone."""
    for line in plan.splitlines():
        found = re.search(r"(SCAN|SEARCH) coupling_coupling(?: USING (?:COVERING )?INDEX \w+ \((.*)\))?", line)
        if found and (found.group(1) == "SCAN" or WHOLE_MAPPING.fullmatch(found.group(2) or "")):
            return True
    return False
