"""Real worker processes: killed at random points of a full synchronization, and two of them sharing one."""

import random
import sqlite3
import time

import pytest
import redis

RECORDS = 5000


def wait(process, timeout):
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return process.poll()


def wait_for_log(path, text, process, timeout=120) -> bool:
    """Wait until the process's log shows `text` (True), or the process ended or the time ran out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.system
def test_killing_the_worker_at_random_points_and_rerunning_leaves_no_duplicate_and_loses_nothing(scratch):
    counts = scratch.install(customers=RECORDS)
    assert counts["bc_customers"] == RECORDS
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    kills = rounds = 0
    # Kill at a random instant of the run itself (not of the worker's start-up, whose length depends on the
    # machine's load), and go on until two runs died mid-way: a rerun over coupled records takes only seconds.
    while kills < 2 and rounds < 10:
        rounds += 1
        scratch.manage("sync", "CUSTOMER", "--kind", "full", "--enqueue")
        # A SimpleWorker runs the job in its own process: killing it kills the run (RQ's default worker forks a
        # work horse into a session of its own, which a kill of the worker would not reach).
        worker = scratch.start("rqworker", "default", "--burst", "--worker-class", "rq.SimpleWorker", log_name="worker")
        started = wait_for_log(scratch.folder / f"worker-{len(scratch.processes) - 1}.log", "run_sync_jobs", worker)
        time.sleep(rng.uniform(0.0, 2.5))
        if started and worker.poll() is None:
            kills += 1
        scratch.kill(worker)
    assert kills, f"no worker was killed mid-run (seed {seed}): the test proved nothing"

    # The rerun that is allowed to finish.
    scratch.manage("sync", "CUSTOMER", "--kind", "full", timeout=600)
    state = scratch.verify()

    assert state["accounts"] == RECORDS, (seed, state["jobs"])  # none lost, none duplicated
    assert state["couplings"] == RECORDS
    assert state["pending"] == 0
    assert state["bc_coupled_twice"] == 0
    assert state["names_match"] == RECORDS
    last = state["last"]
    assert last["status"] == "succeeded" and last["failed"] == 0
    assert last["inserted"] + last["modified"] + last["unchanged"] == RECORDS  # the counts reconcile
    killed_runs = [job for job in state["jobs"][:-1] if job["status"] != "succeeded"]
    assert all(job["status"] in ("failed", "cancelled", "queued") for job in killed_runs), state["jobs"]
    # At least one run died while running (a kill before the worker took its job proves less).
    assert any(job["status"] == "failed" for job in killed_runs), (seed, state["jobs"])


def job_rows(scratch, where="1=1") -> list[dict]:
    """The sync jobs, read straight from the installation's SQLite file (a `manage.py shell` takes seconds)."""
    with sqlite3.connect(scratch.folder / "syncadmin.sqlite3", timeout=10) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(f"SELECT * FROM jobs_syncjob WHERE {where} ORDER BY id")]  # noqa: S608


def poll(condition, timeout: float, interval: float = 0.25):
    """Call `condition` until it returns something true (returned) or the time runs out (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    return None


@pytest.mark.system
def test_a_run_whose_worker_is_killed_is_failed_unlocked_and_resumed_within_a_minute_and_the_counts_reconcile(
    scratch, redis_url
):
    # The heartbeat lapses 3 s after the kill (the scratch's setting; 30 s by default); the lock, as deployed, would
    # block the mapping for 5 minutes if it were left to expire.
    scratch.env["SYNC_LOCK_TIMEOUT_SECONDS"] = "300"
    scratch.install(customers=RECORDS)
    scratch.shell("from jobs.models import Schedule; Schedule.objects.update(enabled=False); print('{}')")
    scratch.manage("sync", "CUSTOMER", "--kind", "full", "--enqueue")
    worker = scratch.start("rqworker", "default", "--burst", "--worker-class", "rq.SimpleWorker", log_name="worker")

    # Kill the worker once the run has saved some pages, before it is done.
    crashed = poll(lambda: next(iter(job_rows(scratch, "status = 'running' AND inserted > 0")), None), timeout=180)
    assert crashed is not None, "the run never got going"
    scratch.kill(worker)
    killed_at = time.monotonic()
    crashed = job_rows(scratch, f"id = {crashed['id']}")[0]
    assert crashed["status"] == "running" and crashed["inserted"] < RECORDS, "the run ended before the kill"

    # What a deployment runs: the scheduler (its tick every 30 s) and a worker.
    scratch.start("rqcron", "syncadmin.cron", log_name="scheduler")
    scratch.start("rqworker", "default", log_name="worker")

    failed = poll(lambda: job_rows(scratch, f"id = {crashed['id']} AND status = 'failed'"), timeout=90)
    detected_after = time.monotonic() - killed_at
    assert failed, "the dead worker's run was not failed within 90 s"
    assert detected_after < 60, f"detected only after {detected_after:.0f} s"
    assert failed[0]["message"].startswith("The worker stopped before the run finished"), failed[0]["message"]
    lock = redis.Redis.from_url(redis_url).get(f"syncadmin:mapping-run:{crashed['table_mapping_id']}")
    assert lock != crashed["lock_token"].encode()  # released (a resumed run may hold it already, with its own)

    resumed = poll(
        lambda: job_rows(scratch, f"resumed_from_id = {crashed['id']} AND status NOT IN ('queued', 'running')"),
        timeout=240,
    )
    assert resumed, ("the resumed run did not finish", job_rows(scratch))
    resumed = resumed[0]
    assert resumed["status"] == "succeeded", resumed
    assert resumed["kind"] == "full" and resumed["direction"] == crashed["direction"]
    assert len(job_rows(scratch, "resumed_from_id IS NOT NULL")) == 1  # resumed once

    state = scratch.verify()
    assert state["accounts"] == RECORDS  # none lost, none duplicated
    assert state["couplings"] == RECORDS and state["pending"] == 0 and state["bc_coupled_twice"] == 0
    assert state["names_match"] == RECORDS
    # Every account was created by the crashed run or the resumed one, and each counted it once.
    assert failed[0]["inserted"] + resumed["inserted"] == RECORDS, (failed[0], resumed)


@pytest.mark.system
def test_two_workers_share_a_full_synchronization_and_sync_every_record_exactly_once(scratch):
    scratch.install(customers=RECORDS)
    scratch.manage("sync", "CUSTOMER", "--kind", "full", "--enqueue")
    first = scratch.start("rqworker", "default", "--burst", log_name="worker")
    time.sleep(1.5)  # the first worker has taken the run and queued its helpers
    second = scratch.start("rqworker", "default", "--burst", log_name="worker")
    assert wait(first, 600) == 0
    assert wait(second, 600) == 0

    state = scratch.verify()
    assert state["accounts"] == RECORDS
    assert state["couplings"] == RECORDS
    assert state["bc_coupled_twice"] == 0
    assert state["last"]["inserted"] == RECORDS and state["last"]["failed"] == 0
    helped = scratch.shell(HELPER_PAGES)
    assert helped["pages"] > 0, "the second worker processed no page: the run was not shared"


HELPER_PAGES = """
import json
import django_rq
from rq.registry import FinishedJobRegistry
queue = django_rq.get_queue("default")
registry = FinishedJobRegistry(queue=queue)
pages = 0
for job_id in registry.get_job_ids():
    job = queue.fetch_job(job_id)
    if job and job.func_name == "jobs.tasks.help_shared_sync":
        pages += job.return_value() or 0
print(json.dumps({"pages": pages}))
"""
