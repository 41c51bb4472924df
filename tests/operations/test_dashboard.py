"""The admin's start page: its numbers reconcile with the jobs, errors, schedules and watermarks in the database."""

import json
import re
from datetime import timedelta

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from jobs.choices import ErrorClass, JobKind, JobStatus
from jobs.models import ScheduleState, SubscriptionStatus, SyncError, SyncJob, WebhookSubscription
from mappings.choices import Direction
from mappings.models import TableMapping
from operations import dashboard, dashboard_hours

pytestmark = pytest.mark.django_db


def make_job(mapping, direction, status, *, minutes_ago=5, seconds=20, **counts):
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    running = status == JobStatus.RUNNING
    return SyncJob.objects.create(
        table_mapping=mapping,
        direction=direction,
        status=status,
        started_at=finished - timedelta(seconds=seconds),
        finished_at=None if running else finished,
        **counts,
    )


def make_errors(job, error_class, count):
    SyncError.objects.bulk_create(
        SyncError(
            job=job, table_mapping=job.table_mapping, direction=job.direction, error_class=error_class, message="x"
        )
        for _ in range(count)
    )


@pytest.fixture
def mappings():
    return {m.name: m for m in TableMapping.objects.select_related("schedule")}


@pytest.fixture
def history(mappings):
    """A mapping per health: SALESPEOPLE needs attention (open errors), CUSTOMER running, VENDOR paused, CONTACT
    failing, CURRENCY idle."""
    salespeople, customer, vendor = mappings["SALESPEOPLE"], mappings["CUSTOMER"], mappings["VENDOR"]
    contact, currency = mappings["CONTACT"], mappings["CURRENCY"]
    make_job(salespeople, Direction.FROM_DATAVERSE, JobStatus.FAILED, minutes_ago=60)  # older: not the last run
    last = make_job(
        salespeople,
        Direction.FROM_DATAVERSE,
        JobStatus.SUCCEEDED,
        inserted=4,
        modified=2,
        unchanged=9,
        progress_done=15,
    )
    # A preview, newer, is no run.
    make_job(salespeople, Direction.FROM_DATAVERSE, JobStatus.SUCCEEDED, minutes_ago=0, inserted=99, dry_run=True)
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.SUCCEEDED)
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.RUNNING, minutes_ago=0)
    vendor.schedule.enabled = False
    vendor.schedule.save()
    failed = make_job(contact, Direction.TO_DATAVERSE, JobStatus.FAILED, failed=3)
    make_job(contact, Direction.FROM_DATAVERSE, JobStatus.SUCCEEDED)
    make_job(currency, Direction.TO_DATAVERSE, JobStatus.SUCCEEDED)
    currency.schedule.state = ScheduleState.ON_HOLD
    currency.schedule.save()
    make_errors(failed, ErrorClass.VALIDATION, 2)
    make_errors(failed, ErrorClass.CONFLICT, 1)
    make_errors(last, ErrorClass.MISSING_DEPENDENCY, 4)
    return {"last": last, "failed": failed}


def rows_by_name(html):
    return {name: body for name, body in re.findall(r'<tr data-mapping="([A-Z]+)"(.*?)</tr>', html, flags=re.S)}


def test_each_mapping_shows_its_health(admin_client, history):
    html = admin_client.get("/admin/").content.decode()

    health = {name: re.search(r'data-health="(\w+)"', body).group(1) for name, body in rows_by_name(html).items()}
    assert health == {
        "SALESPEOPLE": "attention",
        "CUSTOMER": "running",
        "VENDOR": "paused",
        "CONTACT": "failing",
        "CURRENCY": "idle",
    }
    for state, _ in dashboard.HEALTH_HELP:  # each health is explained on the page
        assert f"<strong>{state}</strong>:" in html
    # Its last run succeeded, but 4 of its errors are open: said, not "healthy".
    assert '>needs attention</span><div class="ops-quiet">4 open errors</div>' in rows_by_name(html)["SALESPEOPLE"]


def test_the_last_run_is_the_last_finished_job_of_each_direction_with_its_counts(admin_client, history):
    html = admin_client.get("/admin/").content.decode()
    rows = rows_by_name(html)

    last = history["last"]
    assert re.findall(r'<div data-job="(\d+)">', rows["SALESPEOPLE"]) == [str(last.pk)]
    # The records read and every outcome, skipped included, so the line adds up (the demo's CONTACT read 300
    # records out of scope and showed "0 inserted, 0 modified, 0 deleted, 0 unchanged, 0 failed").
    assert "15 read: 4 inserted, 2 modified, 0 deleted, 9 unchanged, 0 skipped, 0 failed" in rows["SALESPEOPLE"]
    assert f"/admin/jobs/syncjob/{last.pk}/change/" in rows["SALESPEOPLE"]
    # CONTACT runs both ways: one line per direction, the failed one with its failures.
    contact_jobs = SyncJob.objects.filter(table_mapping__name="CONTACT").order_by("direction")
    assert sorted(re.findall(r'<div data-job="(\d+)">', rows["CONTACT"])) == sorted(str(j.pk) for j in contact_jobs)
    assert "3 failed" in rows["CONTACT"]
    assert "never run" in rows["VENDOR"]


def test_open_errors_are_counted_by_class_and_link_to_the_filtered_list(admin_client, history, mappings):
    html = admin_client.get("/admin/").content.decode()
    rows = rows_by_name(html)

    contact = rows["CONTACT"]
    assert re.search(r'data-errors="(\d+)"', contact).group(1) == "3"
    counts = dict(re.findall(r'data-error-class="(\w+)" data-count="(\d+)"', contact))
    assert counts == {"validation": "2", "conflict": "1"}
    for error_class, count in counts.items():
        expected = SyncError.objects.filter(table_mapping__name="CONTACT", error_class=error_class).count()
        assert int(count) == expected
    assert f"/admin/jobs/syncerror/?table_mapping={mappings['CONTACT'].pk}&amp;error_class=validation" in contact
    assert dict(re.findall(r'data-error-class="(\w+)" data-count="(\d+)"', rows["SALESPEOPLE"])) == {
        "missing_dependency": "4"
    }
    assert re.search(r'data-errors="(\d+)"', rows["VENDOR"]).group(1) == "0"


def test_the_lag_is_the_time_since_the_last_successful_whole_run_of_each_direction_started(mappings):
    """Every change made before a successful run of modified records (or full synchronization) started was read: the
    lag is at most the time since then. The source's watermark (its last change) says nothing about the lag: the walk
    showed "2 d 19 h" minutes after successful runs of a table nobody had changed for days."""
    now = timezone.now()
    customer = mappings["CUSTOMER"]
    customer.bc_watermark = customer.dataverse_watermark = now - timedelta(days=2, hours=19)
    customer.save()
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.SUCCEEDED, minutes_ago=10, seconds=20, inserted=272)
    # Newer runs that do not cover the direction, or failed, leave what the last successful one read.
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.FAILED, minutes_ago=2, failed=1, kind=JobKind.RECORDS)
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.FAILED, minutes_ago=1)
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.SUCCEEDED, minutes_ago=0, dry_run=True)
    make_job(
        customer,
        Direction.FROM_DATAVERSE,
        JobStatus.PARTLY_FAILED,
        minutes_ago=3,
        seconds=30,
        failed=1,
        kind=JobKind.FULL,
    )
    currency = mappings["CURRENCY"]  # to Dataverse only; a watermark but no run yet
    currency.bc_watermark = now - timedelta(minutes=1)
    currency.save()

    rows = {row.mapping.name: row for row in dashboard.mapping_rows(now=now)}

    # make_job reads the clock a moment after `now`: to the second.
    lags = {lag.direction: round(lag.lag.total_seconds()) for lag in rows["CUSTOMER"].lags}
    assert lags == {Direction.TO_DATAVERSE: 10 * 60 + 20, Direction.FROM_DATAVERSE: 3 * 60 + 30}
    assert round(rows["CUSTOMER"].lag.total_seconds()) == 10 * 60 + 20
    assert [(lag.direction, lag.lag) for lag in rows["CURRENCY"].lags] == [(Direction.TO_DATAVERSE, None)]
    assert rows["CURRENCY"].lag is None and rows["VENDOR"].lag is None  # never synchronized


def test_the_page_shows_the_lag_in_seconds_and_words(admin_client, mappings):
    customer = mappings["CUSTOMER"]
    customer.bc_watermark = timezone.now() - timedelta(days=2, hours=19)
    customer.save()
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.SUCCEEDED, minutes_ago=10, seconds=0)

    row = rows_by_name(admin_client.get("/admin/").content.decode())["CUSTOMER"]

    seconds = int(re.search(r'data-direction="to_dataverse" data-lag-seconds="(\d+)"', row).group(1))
    assert 600 <= seconds <= 610
    assert "To Dataverse: 10 min" in row
    assert "From Dataverse: never synchronized" in row


def test_a_failed_retry_of_one_record_is_a_record_failing_not_the_mapping_failing(admin_client, mappings):
    """The walk: CUSTOMER "failing" because a one-record retry failed after a 272-record run that succeeded. It is a
    record failing, which needs attention (not "healthy" either)."""
    customer = mappings["CUSTOMER"]
    customer.schedule.enabled = True
    customer.schedule.state = ScheduleState.READY
    customer.schedule.save()
    run = make_job(customer, Direction.TO_DATAVERSE, JobStatus.SUCCEEDED, minutes_ago=10, inserted=272)
    back = make_job(customer, Direction.FROM_DATAVERSE, JobStatus.SUCCEEDED, minutes_ago=9, unchanged=272)
    retry = make_job(customer, Direction.TO_DATAVERSE, JobStatus.FAILED, minutes_ago=2, failed=1, kind=JobKind.RECORDS)

    html = admin_client.get("/admin/").content.decode()
    row = rows_by_name(html)["CUSTOMER"]

    assert 'data-mapping="CUSTOMER" data-health="attention"' in html
    assert sorted(re.findall(r'<div data-job="(\d+)">', row)) == sorted([str(run.pk), str(back.pk)])
    assert "272 inserted" in row
    assert f'data-retry-job="{retry.pk}" data-failed="1">1 record failing' in row
    assert "1 record failing in a later retry" in row

    # A failed whole run is the mapping failing, whatever came before it.
    make_job(customer, Direction.TO_DATAVERSE, JobStatus.FAILED, minutes_ago=1, failed=272)
    html = admin_client.get("/admin/").content.decode()
    assert 'data-mapping="CUSTOMER" data-health="failing"' in html
    assert "data-retry-job" not in rows_by_name(html)["CUSTOMER"]  # the retry is older than the last whole run


def test_running_jobs_show_progress_rate_and_time_left(admin_client, mappings):
    job = make_job(mappings["CUSTOMER"], Direction.TO_DATAVERSE, JobStatus.RUNNING, minutes_ago=0, seconds=100)
    SyncJob.objects.filter(pk=job.pk).update(progress_done=500, progress_total=2000)

    [item] = dashboard.running_jobs(now=job.started_at + timedelta(seconds=100))
    assert item.percent == 25
    assert item.rate == pytest.approx(5.0)
    assert item.time_left == timedelta(seconds=300)
    html = admin_client.get("/admin/").content.decode()
    assert f'<tr data-job="{job.pk}">' in html
    assert '<progress max="100" value="25">' in html


def test_the_charts_carry_the_hourly_sums_of_the_jobs_and_errors(admin_client, history):
    response = admin_client.get("/admin/?range=7d")
    html = response.content.decode()

    def chart(name):
        return json.loads(re.search(rf'<script id="{name}-data" type="application/json">(.*?)</script>', html).group(1))

    records = {d["key"]: d["data"] for d in chart("records")["datasets"]}
    finished = SyncJob.objects.filter(dry_run=False, finished_at__isnull=False)
    assert sum(records["inserted"]) == sum(j.inserted for j in finished) == 4
    assert sum(records["failed"]) == 3
    errors = {d["key"]: sum(d["data"]) for d in chart("errors")["datasets"]}
    assert errors == {"validation": 2, "conflict": 1, "missing_dependency": 4}
    durations = {d["label"] for d in chart("durations")["datasets"]}
    assert durations == {"SALESPEOPLE", "CUSTOMER", "CONTACT", "CURRENCY"}
    assert len(chart("records")["labels"]) == 7 * 24 + 1
    assert "<strong>7 days</strong>" in html


def test_the_models_stay_listed_below_the_dashboard(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert 'id="ops-models"' in html
    assert '<a href="/admin/jobs/syncjob/"' in html


def test_the_dashboard_needs_a_login(client):
    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_user_without_view_permission_on_table_mappings_sees_no_mapping_rows(client, history):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_syncjob"))
    client.force_login(user)

    html = client.get("/admin/").content.decode()

    assert "data-mapping=" not in html
    assert 'id="ops-mappings"' not in html
    assert 'id="ops-running"' in html  # what the user may view stays
    assert 'id="ops-connections"' not in html and 'id="errors-data"' not in html


def test_finished_hours_are_kept_in_redis_and_read_from_there_with_the_same_figures(
    history, redis_connection, django_assert_num_queries
):
    now = timezone.now()
    first = dashboard.charts(range_key="7d", now=now)

    assert len(redis_connection.keys(f"{dashboard_hours.KEY_PREFIX}:*")) >= 7 * 24 - 1
    with django_assert_num_queries(3):  # the mappings' names, then the live hour's jobs and its errors
        again = dashboard.charts(range_key="7d", now=now)
    assert again == first


def test_without_redis_the_charts_are_read_from_the_database(history, monkeypatch):
    now = timezone.now()
    expected = dashboard.charts(range_key="24h", now=now)

    def unreachable():
        raise redis.ConnectionError("no Redis here")

    monkeypatch.setattr(dashboard_hours, "redis_client", unreachable)
    assert dashboard.charts(range_key="24h", now=now) == expected


def test_change_notifications_after_the_watermark_say_that_a_change_waits(mappings):
    now = timezone.now()
    customer = mappings["CUSTOMER"]
    customer.bc_watermark = customer.dataverse_watermark = now - timedelta(minutes=10)
    customer.save()
    for side, notified in [
        ("business_central", now - timedelta(minutes=4)),
        ("dataverse", now - timedelta(minutes=12)),
    ]:
        subscription = WebhookSubscription(
            table_mapping=customer,
            side=side,
            status=SubscriptionStatus.ACTIVE,
            notification_url="https://syncadmin.example/webhooks/x",
            last_notification_at=notified,
        )
        subscription.set_secret("s3cret")
        subscription.save()

    [row] = [row for row in dashboard.mapping_rows(now=now) if row.mapping.name == "CUSTOMER"]

    to_dataverse, from_dataverse = row.lags
    assert (to_dataverse.subscribed, to_dataverse.notified_at) == (True, now - timedelta(minutes=4))
    assert (from_dataverse.subscribed, from_dataverse.notified_at) == (True, None)  # nothing notified since
    assert [(lag.subscribed, lag.notified_at) for lag in dashboard.mapping_rows(now=now)[0].lags] == [(False, None)] * 2
