"""Crash recovery in one process, against the test run's real Redis: a run whose worker stopped is failed, its lock
freed and the run resumed once; inserts an interrupted run wrote are counted by the run that recovers them; and a
full synchronization that reads far more than it counted stops. (tests/system kills real workers.)"""

import time

import django_rq
import pytest

from connectors.base import ODataClient
from connectors.clients import open_client
from jobs import services
from jobs.choices import JobKind, JobStatus
from jobs.engine import reader
from jobs.engine.saver import PageSaver
from jobs.models import SyncJob
from jobs.recovery import RunHeartbeat, heartbeat_key
from jobs.scheduling.tick import scheduler_tick
from jobs.services import mapping_lock_key, sync_jobs_create, sync_jobs_run
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


DEAD_TOKEN = "token-of-the-dead"  # noqa: S105 (a lock's token, no secret)


def running_job(mapping, *, kind=JobKind.FULL, rq_job_id="rq-1", lock_token=DEAD_TOKEN, **fields):
    """A job as a worker leaves it when it dies mid-run: running, holding the mapping's lock, no heartbeat."""
    job = SyncJob.objects.create(
        kind=kind,
        table_mapping=mapping,
        direction="to_dataverse",
        status=JobStatus.RUNNING,
        rq_job_id=rq_job_id,
        lock_token=lock_token,
        **fields,
    )
    return job


def queued_rq_jobs():
    queue = django_rq.get_queue("default")
    return [(job.func_name, job.args) for job in queue.get_jobs()]


@pytest.fixture
def mapping(db):
    return TableMapping.objects.get(name="CUSTOMER")


def test_a_run_whose_worker_stopped_is_failed_its_lock_freed_and_resumed_once_with_the_rest_of_its_rq_job(
    mapping, redis_connection, django_capture_on_commit_callbacks
):
    dead = running_job(mapping, record_ids=[], requested_by=None)
    redis_connection.set(mapping_lock_key(mapping.pk), dead.lock_token, ex=300)  # the dead worker's lock
    # The same RQ job would have run the other direction next: it died with the worker.
    after = SyncJob.objects.create(
        kind=JobKind.FULL, table_mapping=mapping, direction="from_dataverse", rq_job_id="rq-1"
    )

    with django_capture_on_commit_callbacks(execute=True):
        scheduler_tick()

    dead.refresh_from_db()
    assert dead.status == JobStatus.FAILED
    assert dead.message.startswith("The worker stopped before the run finished")
    assert dead.finished_at is not None
    assert not redis_connection.exists(mapping_lock_key(mapping.pk))  # free at once, not after 300 s
    resumed = dead.resumed_by
    assert (resumed.kind, resumed.direction, resumed.table_mapping, resumed.status) == (
        JobKind.FULL,
        "to_dataverse",
        mapping,
        JobStatus.QUEUED,
    )
    assert f"Resumed as job #{resumed.pk}" in dead.message
    # One RQ job runs the resumed run, then what the dead RQ job had not reached.
    assert queued_rq_jobs() == [("jobs.tasks.run_sync_jobs", ([resumed.pk, after.pk],))]
    resumed.refresh_from_db()
    after.refresh_from_db()
    assert resumed.rq_job_id and resumed.rq_job_id == after.rq_job_id

    # The next ticks find nothing more to do: resumed once.
    with django_capture_on_commit_callbacks(execute=True):
        scheduler_tick()
    assert SyncJob.objects.filter(resumed_from__isnull=False).count() == 1
    assert len(queued_rq_jobs()) == 1


def test_a_live_run_is_left_alone_and_a_lock_another_run_took_is_not_released(
    mapping, redis_connection, django_capture_on_commit_callbacks
):
    alive = running_job(mapping, rq_job_id="rq-alive")
    redis_connection.set(heartbeat_key(alive.pk), "host:123", ex=30)
    vendor = TableMapping.objects.get(name="VENDOR")
    dead = running_job(vendor, rq_job_id="rq-dead")
    redis_connection.set(mapping_lock_key(vendor.pk), "token-of-a-newer-run", ex=300)

    with django_capture_on_commit_callbacks(execute=True):
        services.sync_runs_recover()

    alive.refresh_from_db()
    dead.refresh_from_db()
    assert alive.status == JobStatus.RUNNING and not hasattr(alive, "resumed_by")
    assert dead.status == JobStatus.FAILED
    assert redis_connection.get(mapping_lock_key(vendor.pk)) == b"token-of-a-newer-run"


def test_a_resumed_run_whose_worker_stops_too_is_not_resumed_again(mapping, django_capture_on_commit_callbacks):
    first = SyncJob.objects.create(table_mapping=mapping, direction="to_dataverse", status=JobStatus.FAILED)
    second = running_job(mapping, resumed_from=first)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.sync_runs_recover() == []

    second.refresh_from_db()
    assert second.status == JobStatus.FAILED
    assert f"Not resumed again: it resumed job #{first.pk}" in second.message
    assert not hasattr(second, "resumed_by")
    assert queued_rq_jobs() == []


def test_a_run_being_cancelled_when_its_worker_stopped_is_not_resumed(mapping, django_capture_on_commit_callbacks):
    dead = running_job(mapping, cancel_requested=True)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.sync_runs_recover() == []

    dead.refresh_from_db()
    assert dead.status == JobStatus.FAILED and "Not resumed: it was being cancelled." in dead.message
    assert queued_rq_jobs() == []


def test_the_heartbeat_beats_while_the_run_lives_and_lapses_soon_after_its_process_stops(
    settings, redis_connection, mapping
):
    settings.SYNC_WORKER_LOST_AFTER_SECONDS = 3
    job = running_job(mapping)
    beat = RunHeartbeat(job.pk)
    with beat:
        time.sleep(3.5)  # longer than the key lives: only renewals keep it
        assert redis_connection.exists(heartbeat_key(job.pk))
        assert services.sync_runs_recover() == []
        # The process dies: nothing renews the key any more (here: the beating thread stops, the key stays behind).
        beat._stop.set()
        beat._thread.join()
        assert redis_connection.exists(heartbeat_key(job.pk))
        deadline = time.monotonic() + 5
        while redis_connection.exists(heartbeat_key(job.pk)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not redis_connection.exists(heartbeat_key(job.pk))
        assert services.sync_runs_recover() != []


def test_a_finished_run_leaves_no_heartbeat_and_its_lock_token_names_the_lock_it_held(
    customer, sandbox_connections, redis_connection, monkeypatch
):
    job = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse")[0]
    seen = {}

    original = services._run_sync

    def spying(job, *args, **kwargs):
        seen["heartbeat"] = redis_connection.exists(heartbeat_key(job.pk))
        seen["token"] = SyncJob.objects.get(pk=job.pk).lock_token
        seen["lock"] = redis_connection.get(mapping_lock_key(customer.pk))
        return original(job, *args, **kwargs)

    monkeypatch.setattr(services, "_run_sync", spying)
    sync_jobs_run(job_ids=[job.pk])

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert seen["heartbeat"] and seen["token"] and seen["lock"] == seen["token"].encode()
    assert not redis_connection.exists(heartbeat_key(job.pk))


def dataverse_accounts(dataverse):
    with open_client(dataverse) as client:
        return {row["accountid"] for page in client.read_pages("accounts", select=["accountid"]) for row in page.rows}


def test_inserts_a_crashed_run_wrote_but_never_saved_are_counted_by_the_run_that_recovers_them(
    customer, sandbox_connections, monkeypatch
):
    _, dataverse = sandbox_connections
    before = dataverse_accounts(dataverse)
    original_save = PageSaver.save
    saves = []

    def crash_after_writing_the_second_page(self, written, **counts):
        saves.append(1)
        if len(saves) == 2:
            raise SystemExit("the worker dies between writing a page and saving it")  # not caught by the run
        return original_save(self, written, **counts)

    monkeypatch.setattr(PageSaver, "save", crash_after_writing_the_second_page)
    crashed = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse")[0]
    with pytest.raises(SystemExit):
        sync_jobs_run(job_ids=[crashed.pk])
    monkeypatch.setattr(PageSaver, "save", original_save)
    crashed.refresh_from_db()
    assert crashed.status == JobStatus.RUNNING  # as a killed worker leaves it
    landed = dataverse_accounts(dataverse) - before
    assert len(landed) > crashed.inserted  # the second page's inserts landed, uncounted

    (resumed,) = services.sync_runs_recover()  # the tick's part, without the RQ worker: run the resumption here
    sync_jobs_run(job_ids=[resumed.pk])

    resumed.refresh_from_db()
    created = dataverse_accounts(dataverse) - before
    assert resumed.status == JobStatus.SUCCEEDED, resumed.message
    assert crashed.inserted + resumed.inserted == len(created)  # the totals reconcile with what exists


def test_inserts_into_business_central_that_a_crashed_run_wrote_are_counted_by_the_run_that_recovers_them(
    customer, sandbox_connections, monkeypatch
):
    bc, _ = sandbox_connections
    with open_client(bc) as client:
        before = {row["id"] for page in client.read_pages("customers", select=["id"]) for row in page.rows}
    original_save = PageSaver.save
    saves = []

    def crash_after_writing_the_first_page(self, written, **counts):
        saves.append(1)
        if len(saves) == 1:
            raise SystemExit("the worker dies between writing a page and saving it")
        return original_save(self, written, **counts)

    monkeypatch.setattr(PageSaver, "save", crash_after_writing_the_first_page)
    crashed = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="from_dataverse")[0]
    with pytest.raises(SystemExit):
        sync_jobs_run(job_ids=[crashed.pk])
    monkeypatch.setattr(PageSaver, "save", original_save)
    (resumed,) = services.sync_runs_recover()
    sync_jobs_run(job_ids=[resumed.pk])

    with open_client(bc) as client:
        created = {row["id"] for page in client.read_pages("customers", select=["id"]) for row in page.rows} - before
    crashed.refresh_from_db()
    resumed.refresh_from_db()
    assert resumed.status == JobStatus.SUCCEEDED, resumed.message
    assert created, "the test proved nothing: no customer was created"
    assert crashed.inserted + resumed.inserted == len(created)


def test_a_full_synchronization_that_reads_far_more_than_it_counted_stops_with_a_clear_message(
    customer, sandbox_connections, monkeypatch
):
    original = ODataClient.read_pages

    def the_same_page_for_ever(self, entity_set, **kwargs):
        if "modified_since" not in kwargs:  # counting, looking up counterparts: as usual
            yield from original(self, entity_set, **kwargs)
            return
        first = next(iter(original(self, entity_set, **kwargs)))
        while True:  # the run's read of its source: as a server that keeps sending new pages (each a new link)
            yield first

    monkeypatch.setattr(ODataClient, "read_pages", the_same_page_for_ever)
    monkeypatch.setattr(reader, "RUNAWAY_FLOOR", 10)
    job = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse")[0]
    sync_jobs_run(job_ids=[job.pk])

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert f"more than 3x the {job.progress_total} records counted at the start" in job.message
    assert "the source keeps returning pages; stopped." in job.message
