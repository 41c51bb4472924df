"""Real processes: two Business Central companies of the sandbox (served by `runsandbox` on a socket) synchronize with
one Dataverse through RQ workers started as `manage.py rqworker`; one company's locked or failing runs hold up none
of the other's."""

import time

import pytest
import redis

TWO_COMPANIES = """
import json
from connectors.models import Connection
from mappings.defaults import create_default_mappings
from mappings.models import TableMapping
from sandbox import services as sandbox
sandbox.seed_second_company(customers=10, shared=5)
a = Connection.objects.get(name="bc")
b = Connection.objects.get(name="bc")
b.pk, b.name, b.bc_company_id = None, "bc canada", sandbox.second_company_id()
b.save()
TableMapping.objects.filter(company__isnull=True).update(company=a)
create_default_mappings(company=b)
for company in (a, b):
    customer = TableMapping.objects.get(company=company, name="CUSTOMER")
    customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    customer.field_mappings.filter(bc_field="displayName", dataverse_field="name").update(use_for_matching=True)
    customer.direction, customer.table_filter = "to_dataverse", ""
    customer.multi_company = True  # customers the companies share: coupled by name, not created twice
    customer.save()
print(json.dumps({"a": TableMapping.objects.get(company=a, name="CUSTOMER").pk,
                  "b": TableMapping.objects.get(company=b, name="CUSTOMER").pk}))
"""

STATE = """
import json
from collections import Counter
from connectors.clients import open_client
from connectors.models import Connection
from jobs.models import SyncJob
dv = open_client(Connection.objects.get(name="dv"))
rows = [r for p in dv.read_pages("accounts", select=["accountid", "name", "_bcbi_companyid_value"]) for r in p.rows]
companies = {str(c.dataverse_company_id): c.name for c in Connection.objects.exclude(dataverse_company_id=None)}
print(json.dumps({
    "accounts": len(rows),
    "names_twice": sum(1 for n in Counter(r["name"] for r in rows).values() if n > 1),
    "by_company": Counter(companies.get(r["_bcbi_companyid_value"], "none") for r in rows),
    "jobs": {str(j.table_mapping_id): [j.status, j.inserted, j.coupled, j.message, j.finished_at.timestamp()]
             for j in SyncJob.objects.order_by("pk")},
}))
"""


@pytest.mark.system
def test_two_companies_sync_through_real_workers_and_a_locked_company_holds_up_none(scratch):
    counts = scratch.install(customers=20)
    assert counts["bc_customers"] == 20
    ids = scratch.shell(TWO_COMPANIES)

    # Company A's CUSTOMER is locked by a run in progress elsewhere (its lock key held in the run's Redis).
    lock = redis.Redis.from_url(scratch.env["REDIS_URL"])
    lock.set(f"syncadmin:mapping-run:{ids['a']}", "another-run", ex=60)
    scratch.manage("sync", "CUSTOMER", "--kind", "full", "--enqueue")
    workers = [
        scratch.start("rqworker", "default", "--burst", "--worker-class", "rq.SimpleWorker", log_name="worker")
        for _ in range(2)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.wait(timeout=300)
    state = scratch.shell(STATE)
    jobs = state["jobs"]
    assert jobs[str(ids["a"])][0] == "cancelled" and "in progress" in jobs[str(ids["a"])][3], jobs
    assert jobs[str(ids["b"])][:3] == ["succeeded", 10, 0], jobs  # nothing to match: A's accounts are not there yet
    assert state["by_company"] == {"bc canada": 10}
    # B did not wait for A's run to give up on the lock (5 s): another worker ran it meanwhile.
    assert jobs[str(ids["b"])][4] < jobs[str(ids["a"])][4], jobs

    # The lock is gone: A runs, stamps the accounts it creates, and couples (by name) the 5 customers B wrote first.
    lock.delete(f"syncadmin:mapping-run:{ids['a']}")
    scratch.manage("sync", "CUSTOMER", "--kind", "full", "--company", "bc", "--enqueue")
    scratch.start("rqworker", "default", "--burst", "--worker-class", "rq.SimpleWorker", log_name="worker").wait(300)
    state = scratch.shell(STATE)
    assert state["jobs"][str(ids["a"])][:3] == ["succeeded", 15, 5], state["jobs"]
    assert state["accounts"] == 25 and state["names_twice"] == 0  # 20 + 10 customers, 5 of them shared
    # Multi-company mappings stamp what they create: a shared account keeps the company that wrote it first.
    assert state["by_company"] == {"bc": 15, "bc canada": 10}
    assert time.monotonic() - started < 300
