"""An incremental run's cost follows the records changed, not the records coupled (issue 18: 100 changed among
1,000,000 coupled in under a second). The same run, with the same few changes, among ten times more coupled records
makes the same database queries and the same requests."""

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
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        job = run(mapping, "modified")
    assert job.status == "succeeded", job.message
    assert job.modified == CHANGED
    return statements, job.http_requests


def test_an_incremental_run_costs_the_same_among_ten_times_more_coupled_records(sandbox_http, make_sandbox_connections):
    make_sandbox_connections("http://testserver", page_size=1000)
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.direction = "to_dataverse"
    mapping.table_filter = ""  # every customer, blocked ones too: the coupled count is the seeded count
    mapping.save()
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)

    few_queries, few_requests = incremental_cost(mapping, 20)
    many_queries, many_requests = incremental_cost(mapping, 200)

    assert Coupling.objects.filter(table_mapping=mapping).count() == 200
    assert len(many_queries) == len(few_queries), (
        f"{len(few_queries)} queries among 20 coupled, {len(many_queries)} among 200"
    )
    assert many_requests == few_requests
