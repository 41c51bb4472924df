"""A worker killed while a page's bulk writes are in flight in parallel leaves no duplicate once the run is redone.

Business Central is the hard case: it chooses its ids, so a write that landed without its answer can only be found
again (jobs/engine/writer.py). Each of its requests is slowed down, so that the kill falls while the page's five
`$batch` requests of 100 are in flight together.
"""

import random
import sqlite3
import time

import pytest

RECORDS = 1500

SETUP = """
import json
from connectors.models import Connection
from mappings.models import TableMapping
from sandbox import services, testing
services.seed_demo(customers=0, accounts=0, shared=0, reset=True)
# Unique names: Business Central chooses its ids, so an insert whose answer was lost is found again by its name
# (jobs/engine/writer.py); among namesakes it cannot be, which is a limit of that design, not of parallel writes.
for number in range({records}):
    testing.create_as_another_user("dataverse", "accounts", name=f"Parallel kill {{number:05}}")
TableMapping.objects.filter(name="CUSTOMER").update(direction="from_dataverse", integration_table_filter="")
Connection.objects.filter(name="bc").update(batch_size=100, max_concurrency=5)
Connection.objects.filter(name="dv").update(page_size=500)
testing.inject_faults("latency", count=100000, service="bc", seconds=0.4)
print(json.dumps({{}}))
"""

CLEAR_FAULTS = "from sandbox import testing; testing.clear_faults(); print('{}')"


def couplings(scratch, where: str) -> int:
    with sqlite3.connect(scratch.folder / "syncadmin.sqlite3", timeout=10) as db:
        return db.execute(f"SELECT count(*) FROM coupling_coupling WHERE {where}").fetchone()[0]  # noqa: S608


@pytest.mark.system
def test_a_worker_killed_while_parallel_writes_are_in_flight_leaves_no_duplicate(scratch):
    scratch.install(customers=0)
    scratch.shell(SETUP.format(records=RECORDS))
    seed = random.randrange(1_000_000)
    delay = random.Random(seed).uniform(0.1, 0.6)  # within the 0.4 s each of the five parallel requests takes
    scratch.manage("sync", "CUSTOMER", "--kind", "full", "--enqueue")
    worker = scratch.start("rqworker", "default", "--burst", "--worker-class", "rq.SimpleWorker", log_name="worker")

    # The page's inserts are reserved (committed) just before its writes are sent: kill while they are in flight.
    deadline = time.monotonic() + 180
    while not couplings(scratch, "pending") and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    assert worker.poll() is None, "the run ended before the kill"
    scratch.kill(worker)
    assert couplings(scratch, "pending"), f"no write was in flight at the kill (seed {seed})"
    confirmed = couplings(scratch, "NOT pending")
    landed = scratch.verify()["customers"]
    # The case that could duplicate: records Business Central created whose answer the run never saved.
    assert landed > confirmed, (seed, landed, confirmed)

    scratch.shell(CLEAR_FAULTS)
    scratch.manage("sync", "CUSTOMER", "--kind", "full", timeout=600)
    state = scratch.verify()

    assert state["customers"] == RECORDS, (seed, landed, state["jobs"])  # none lost, none created twice
    assert state["couplings"] == RECORDS and state["pending"] == 0 and state["bc_coupled_twice"] == 0
    assert state["names_match"] == RECORDS
    assert state["last"]["status"] == "succeeded" and state["last"]["failed"] == 0
