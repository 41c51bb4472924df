"""Real worker processes: killed at random points of a full synchronization, and two of them sharing one."""

import random
import time

import pytest

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
