"""Schedules per mapping: defaults, due runs, inactivity hold and wake-up, pause, failures, and atomic claiming."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.choices import JobKind, JobStatus
from jobs.models import Schedule, ScheduleState, SyncJob
from jobs.recovery import heartbeat_key
from jobs.scheduling import schedules as schedule_services
from jobs.scheduling.defaults import create_missing_schedules
from jobs.scheduling.tick import scheduler_tick
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def due(schedule: Schedule, minutes_ago: int = 1) -> Schedule:
    schedule.next_run_at = timezone.now() - timedelta(minutes=minutes_ago)
    schedule.save()
    return schedule


def only_customer_due() -> Schedule:
    Schedule.objects.update(next_run_at=timezone.now() + timedelta(days=1))
    return due(Schedule.objects.get(table_mapping__name="CUSTOMER"))


def test_the_default_mappings_come_with_the_default_schedules():
    schedules = {s.table_mapping.name: s for s in Schedule.objects.select_related("table_mapping")}

    assert set(schedules) == set(TableMapping.objects.values_list("name", flat=True))
    assert {name: s.inactivity_timeout_minutes for name, s in schedules.items()} == {
        "CUSTOMER": 720,
        "VENDOR": 720,
        "CONTACT": 720,
        "CURRENCY": 720,
        "SALESPEOPLE": 1440,
    }
    assert {(s.minutes_between_runs, s.max_attempts, s.enabled, s.state) for s in schedules.values()} == {
        (30, 10, True, ScheduleState.READY)
    }


def test_a_new_mapping_gets_a_schedule():
    customer = TableMapping.objects.get(name="CUSTOMER")
    mapping = TableMapping.objects.create(
        name="PROSPECT",
        bc_entity_set="contacts",
        dataverse_entity_set="leads",
        dataverse_primary_key="leadid",
    )

    assert mapping.schedule.minutes_between_runs == customer.schedule.minutes_between_runs == 30
    assert mapping.schedule.inactivity_timeout_minutes == 1440


def test_a_due_schedule_starts_one_incremental_run_and_moves_its_next_run(django_capture_on_commit_callbacks):
    schedule = only_customer_due()
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        started = scheduler_tick()

    assert started == 1
    jobs = list(SyncJob.objects.filter(table_mapping=schedule.table_mapping))
    assert {(job.kind, job.direction, job.status) for job in jobs} == {
        (JobKind.MODIFIED, "to_dataverse", JobStatus.QUEUED),
        (JobKind.MODIFIED, "from_dataverse", JobStatus.QUEUED),
    }
    assert all(job.rq_job_id for job in jobs), "the run was handed to RQ after the commit"
    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.RUNNING
    assert schedule.status == "Running"
    assert before + timedelta(minutes=30) <= schedule.next_run_at <= timezone.now() + timedelta(minutes=30)
    assert SyncJob.objects.exclude(table_mapping=schedule.table_mapping).count() == 0
    # The next tick finds nothing due.
    assert scheduler_tick() == 0


def test_schedules_due_together_start_in_dependency_order():
    Schedule.objects.update(next_run_at=timezone.now() - timedelta(minutes=1))
    # CUSTOMER has waited longest, but it looks up CURRENCY and SALESPEOPLE couplings.
    Schedule.objects.filter(table_mapping__name="CUSTOMER").update(next_run_at=timezone.now() - timedelta(hours=1))

    assert scheduler_tick() == 5

    first_job_of = {}
    for job in SyncJob.objects.order_by("pk").select_related("table_mapping"):
        first_job_of.setdefault(job.table_mapping.name, job.pk)
    order = sorted(first_job_of, key=first_job_of.get)
    assert order.index("CURRENCY") < order.index("CUSTOMER") < order.index("CONTACT")
    assert order.index("SALESPEOPLE") < order.index("CUSTOMER")
    assert order.index("VENDOR") < order.index("CONTACT")


def test_a_paused_schedule_does_not_run():
    schedule = only_customer_due()
    schedule_services.schedules_pause(schedules=[schedule])

    assert scheduler_tick() == 0
    assert not SyncJob.objects.exists()
    schedule.refresh_from_db()
    assert schedule.status == "Paused"

    schedule_services.schedules_resume(schedules=[schedule])
    assert scheduler_tick() == 1


def test_an_edit_in_the_admin_applies_at_the_next_tick(admin_client):
    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")
    Schedule.objects.update(next_run_at=timezone.now() + timedelta(days=1))
    response = admin_client.post(
        f"/admin/jobs/schedule/{schedule.pk}/change/",
        {
            "next_run_at_0": (timezone.now() - timedelta(minutes=1)).strftime("%Y-%m-%d"),
            "next_run_at_1": (timezone.now() - timedelta(minutes=1)).strftime("%H:%M:%S"),
            "enabled": "on",
            "minutes_between_runs": "5",
            "inactivity_timeout_minutes": "60",
            "max_attempts": "3",
            "wake_on_change": "on",
            "webhook_debounce_seconds": "2",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    assert scheduler_tick() == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at > timezone.now() + timedelta(minutes=4)
    assert schedule.next_run_at < timezone.now() + timedelta(minutes=6)


def test_of_two_schedulers_that_read_the_same_due_schedule_only_one_starts_the_run():
    only_customer_due()
    # Both scheduler processes read the due schedule before either claims it.
    seen_by_first = Schedule.objects.get(table_mapping__name="CUSTOMER")
    seen_by_second = Schedule.objects.get(table_mapping__name="CUSTOMER")

    assert schedule_services.schedule_start_run(schedule=seen_by_first) is True
    assert schedule_services.schedule_start_run(schedule=seen_by_second) is False
    assert SyncJob.objects.count() == 2  # one run: its two directions


def test_a_due_schedule_does_not_queue_a_second_run_beside_one_still_in_progress(redis_connection):
    from jobs.services import sync_enqueue

    schedule = only_customer_due()
    running = sync_enqueue(mapping=schedule.table_mapping, kind=JobKind.FULL)  # e.g. a user's long full sync
    SyncJob.objects.filter(pk__in=[j.pk for j in running]).update(status=JobStatus.RUNNING)
    for job in running:  # alive: its worker beats (a run without a heartbeat is recovered by the tick)
        redis_connection.set(heartbeat_key(job.pk), "test", ex=60)

    assert scheduler_tick() == 0

    assert SyncJob.objects.count() == len(running)
    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.READY
    assert schedule.next_run_at > timezone.now() + timedelta(minutes=29)
    assert "in progress" in schedule.last_message


def finish(jobs, *, status=JobStatus.SUCCEEDED, **counts):
    for job in jobs:
        SyncJob.objects.filter(pk=job.pk).update(status=status, finished_at=timezone.now(), **counts)
        job.refresh_from_db()
    schedule_services.schedules_record_outcomes(jobs=jobs)


def start_customer_run() -> tuple[Schedule, list[SyncJob]]:
    schedule = only_customer_due()
    assert schedule_services.schedule_start_run(schedule=schedule)
    return schedule, list(SyncJob.objects.filter(table_mapping=schedule.table_mapping))


def test_a_run_without_changes_puts_the_schedule_on_hold_and_a_change_wakes_it():
    schedule, jobs = start_customer_run()

    finish(jobs, unchanged=4, skipped=1)

    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.ON_HOLD
    assert schedule.status.startswith("Idle: checking every 30 min")
    hold_ends = timezone.now() + timedelta(minutes=720)
    assert abs((schedule.next_run_at - hold_ends).total_seconds()) < 5
    assert scheduler_tick() == 0

    assert schedule_services.schedule_wake(mapping=schedule.table_mapping) is True

    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.READY
    assert schedule.next_run_at <= timezone.now() + timedelta(minutes=30)


def test_a_run_with_changes_keeps_the_interval():
    schedule, jobs = start_customer_run()

    finish(jobs[:1], modified=2)
    finish(jobs[1:])

    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.READY
    assert timezone.now() + timedelta(minutes=29) < schedule.next_run_at <= timezone.now() + timedelta(minutes=30)


def test_a_change_notified_during_a_run_keeps_the_schedule_from_going_on_hold():
    schedule, jobs = start_customer_run()
    schedule_services.schedule_wake(mapping=schedule.table_mapping)

    finish(jobs)

    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.READY


def test_failed_runs_are_retried_soon_then_the_schedule_shows_failing_and_retries_at_its_interval():
    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")
    schedule.max_attempts = 2
    schedule.save()

    _, jobs = start_customer_run()
    finish(jobs, status=JobStatus.FAILED)
    schedule.refresh_from_db()
    assert (schedule.failed_attempts, schedule.state) == (1, ScheduleState.READY)
    assert schedule.next_run_at <= timezone.now() + schedule_services.RERUN_DELAY
    assert not schedule.is_failing

    _, jobs = start_customer_run()
    SyncJob.objects.filter(pk__in=[j.pk for j in jobs]).update(message="Dataverse could not be read")
    finish(jobs, status=JobStatus.FAILED)
    schedule.refresh_from_db()
    assert schedule.failed_attempts == 2
    assert schedule.status == "Failing (2 failed runs in a row)"
    assert "Dataverse could not be read" in schedule.last_message
    assert schedule.next_run_at > timezone.now() + timedelta(minutes=29)

    # A successful run clears it.
    _, jobs = start_customer_run()
    finish(jobs, modified=1)
    schedule.refresh_from_db()
    assert (schedule.failed_attempts, schedule.status) == (0, "Ready")


def test_a_manual_run_does_not_move_the_schedule(django_capture_on_commit_callbacks):
    from jobs.services import sync_enqueue

    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")
    before = schedule.next_run_at
    jobs = sync_enqueue(mapping=schedule.table_mapping, kind=JobKind.MODIFIED)

    finish(jobs)

    schedule.refresh_from_db()
    assert (schedule.state, schedule.next_run_at) == (ScheduleState.READY, before)


def test_a_due_schedule_runs_for_real_and_its_outcome_feeds_the_schedule(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    """Through RQ and the sandbox: a run that creates records keeps the interval; the next one, with nothing left to
    do, puts the schedule on hold."""
    schedule = only_customer_due()
    # One direction keeps the test about scheduling: customers without an account get one.
    # (without the lookups, which would need the CURRENCY and SALESPEOPLE mappings synchronized first).
    TableMapping.objects.filter(pk=schedule.table_mapping_id).update(sync_only_coupled=False, direction="to_dataverse")
    schedule.table_mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert scheduler_tick() == 1

    rq_worker()

    first_run = list(SyncJob.objects.filter(table_mapping=schedule.table_mapping))
    assert {job.status for job in first_run} == {JobStatus.SUCCEEDED}, [job.message for job in first_run]
    assert sum(job.inserted for job in first_run) > 0
    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.READY, schedule.last_message
    # The list's message counts what the jobs wrote and what failed, apart (failures are no changes).
    written = sum(job.inserted + job.modified + job.deleted for job in first_run)
    assert schedule.last_message == f"{written} record(s) written, 0 failed."
    assert schedule.next_run_at > timezone.now() + timedelta(minutes=29)

    due(schedule)
    with django_capture_on_commit_callbacks(execute=True):
        assert scheduler_tick() == 1
    rq_worker()

    second_run = SyncJob.objects.filter(table_mapping=schedule.table_mapping).exclude(pk__in=[j.pk for j in first_run])
    assert [(job.status, job.inserted + job.modified + job.failed) for job in second_run] == [(JobStatus.SUCCEEDED, 0)]
    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.ON_HOLD
    assert schedule.next_run_at > timezone.now() + timedelta(minutes=719)


@pytest.mark.django_db(databases=["default", "sandbox"], transaction=True, serialized_rollback=True)
def test_two_scheduler_processes_claiming_at_the_same_instant_start_one_run():
    """Real concurrency: two threads, each with its own database connection, claim the same due schedule at once."""
    import threading

    from django.db import connection, connections

    if connection.vendor == "sqlite":
        pytest.skip("SQLite's in-memory test database cannot take concurrent writers; CI runs this on PostgreSQL")
    schedule = only_customer_due()
    barrier = threading.Barrier(2)
    results = []

    def scheduler_process():
        try:
            seen = Schedule.objects.select_related("table_mapping").get(pk=schedule.pk)
            barrier.wait(timeout=10)
            results.append(schedule_services.schedule_start_run(schedule=seen))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler_process) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results) == [False, True]
    assert SyncJob.objects.filter(table_mapping=schedule.table_mapping).count() == 2  # one run: two directions


def test_the_cron_tick_starts_due_runs_through_rq(rq_worker, redis_connection):
    """What `manage.py rqcron syncadmin.cron` does every 30 seconds: enqueue the tick; a worker runs it."""
    import django_rq

    schedule = only_customer_due()

    django_rq.get_queue("default", commit_mode="auto").enqueue("jobs.tasks.scheduler_tick")
    rq_worker()

    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.RUNNING
    assert SyncJob.objects.filter(table_mapping=schedule.table_mapping, kind=JobKind.MODIFIED).count() == 2


def test_a_new_installation_does_not_start_syncing_before_an_administrator_has_looked():
    # Installed now: the data migration's schedules date from when the test database was made, minutes ago perhaps.
    Schedule.objects.all().delete()
    create_missing_schedules(schedule_model=Schedule, mapping_model=TableMapping)

    assert schedule_services.schedules_run_due() == 0
    assert not SyncJob.objects.exists()
    first_runs = Schedule.objects.values_list("next_run_at", flat=True)
    assert min(first_runs) > timezone.now() + timedelta(minutes=25)  # one interval (30 minutes) after install
