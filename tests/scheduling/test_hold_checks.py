"""A schedule on hold after a quiet run does not sleep through a change: at each interval it checks both systems with
one `$top=1` request each, and runs at once when one has changed. Real RQ worker, real HTTP into the sandbox."""

import time
from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from connectors.clients import open_client
from connectors.http import override_transport
from connectors.models import Connection
from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.models import Schedule, ScheduleState, SyncJob
from jobs.scheduling.schedules import schedules_check_on_hold
from jobs.scheduling.tick import scheduler_tick
from mappings.models import TableMapping
from sandbox import testing as sandbox

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


class Recorder(httpx.BaseTransport):
    """The sandbox over `inner`, remembering each request sent."""

    def __init__(self, inner: httpx.BaseTransport):
        self.inner, self.sent = inner, []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return self.inner.handle_request(request)


@pytest.fixture
def tick(django_capture_on_commit_callbacks, rq_worker):
    def run_tick() -> int:
        with django_capture_on_commit_callbacks(execute=True):
            started = scheduler_tick()
        rq_worker()
        return started

    return run_tick


def an_interval_passes(schedule: Schedule) -> None:
    """Move the hold's last run and last check an interval (and a minute) into the past."""
    back = timedelta(minutes=schedule.minutes_between_runs + 1)
    schedule.refresh_from_db()
    Schedule.objects.filter(pk=schedule.pk).update(
        last_finished_at=schedule.last_finished_at - back,
        checked_at=schedule.checked_at - back if schedule.checked_at else None,
    )


@pytest.fixture
def customer_on_hold(sandbox_connections, tick):
    """CUSTOMER (no lookups) synchronized by its schedule until a quiet run put it on hold, both directions."""
    Schedule.objects.update(next_run_at=timezone.now() + timedelta(days=1))
    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")
    mapping = schedule.table_mapping
    TableMapping.objects.filter(pk=mapping.pk).update(sync_only_coupled=False, direction="to_dataverse")
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now())
    assert tick() == 1  # creates an account for each customer
    TableMapping.objects.filter(pk=mapping.pk).update(sync_only_coupled=True, direction="bidirectional")
    for _ in range(3):  # the echoes of its own writes come back once, then nothing changes
        Schedule.objects.filter(pk=schedule.pk, state=ScheduleState.READY).update(next_run_at=timezone.now())
        tick()
        schedule.refresh_from_db()
        if schedule.state == ScheduleState.ON_HOLD:
            break
    assert schedule.state == ScheduleState.ON_HOLD, schedule.last_message
    # The watermark is capped at the run's start as the server's clock may have shown it (whole seconds here), so
    # the first check may find the records the quiet run read just before that: it wakes once, that run moves the
    # watermark past them, and the hold is quiet from then on.
    # A woken run started within the same second as the echoes re-reads them (safe, at least once), so a fast machine
    # can wake it again and again within one second: let the clock pass a second before each check.
    for _ in range(3):
        time.sleep(1.01 - time.time() % 1)
        an_interval_passes(schedule)
        if tick() == 0:
            break
    else:
        pytest.fail("the hold kept waking on the run's own echoes")
    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.ON_HOLD, schedule.last_message
    return schedule


def schedule_list(admin_client) -> str:
    return admin_client.get(reverse("admin:jobs_schedule_changelist")).content.decode()


def test_a_hold_checks_each_interval_with_one_small_request_per_system_and_says_so(
    customer_on_hold, tick, sandbox_http, admin_client
):
    schedule = customer_on_hold
    jobs_before = SyncJob.objects.count()
    recorder = Recorder(sandbox_http)
    with override_transport(recorder):
        assert tick() == 0  # the interval has not passed since the last check: no request
        assert recorder.sent == []

        an_interval_passes(schedule)
        assert tick() == 0

    probes = [(r.method, r.url.path.rsplit("/", 1)[-1], r.url.params.get("$top")) for r in recorder.sent]
    assert sorted(probes) == [("GET", "accounts", "1"), ("GET", "customers", "1")]
    assert all("gt " in r.url.params["$filter"] for r in recorder.sent)  # after the watermark
    # Dataverse ignores $top when odata.maxpagesize is asked for (https://learn.microsoft.com/en-us/power-apps/
    # developer/data-platform/webapi/query/page-results): the check does not ask for it.
    assert not any("maxpagesize" in r.headers.get("Prefer", "") for r in recorder.sent)
    assert SyncJob.objects.count() == jobs_before
    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.ON_HOLD and schedule.checked_at is not None
    since = timezone.localtime(schedule.quiet_since)
    assert f"Idle: checking every 30 min, no changes since {since:%Y-%m-%d %H:%M}" in schedule_list(admin_client)


@pytest.mark.parametrize("changed_side", ["dataverse", "bc"])
def test_a_change_in_either_system_during_the_hold_runs_at_the_next_check(
    customer_on_hold, tick, sandbox_connections, admin_client, changed_side
):
    schedule = customer_on_hold
    coupling = Coupling.objects.filter(table_mapping=schedule.table_mapping).first()
    if changed_side == "dataverse":
        sandbox.edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, address1_city="Woken Town")
    else:
        sandbox.edit_as_another_user("bc", "customers", coupling.bc_id, city="Woken Town")
    jobs_before = set(SyncJob.objects.values_list("pk", flat=True))

    an_interval_passes(schedule)
    assert tick() == 1  # checked, found the change, and ran in the same tick: not 12 hours later

    run = SyncJob.objects.exclude(pk__in=jobs_before)
    assert {job.status for job in run} == {JobStatus.SUCCEEDED}
    assert sum(job.modified for job in run) == 1
    with open_client(sandbox_connections[0]) as bc, open_client(sandbox_connections[1]) as dataverse:
        assert bc.read_by_ids("customers", [coupling.bc_id])[coupling.bc_id]["city"] == "Woken Town"
        account = dataverse.read_by_ids("accounts", [coupling.dataverse_id])[coupling.dataverse_id]
        assert account["address1_city"] == "Woken Town"
    schedule.refresh_from_db()
    assert schedule.state == ScheduleState.READY  # the run changed something: back to the interval


def test_a_shorter_interval_saved_in_the_admin_moves_the_next_run(admin_client):
    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")
    now = timezone.now()
    Schedule.objects.filter(pk=schedule.pk).update(
        last_finished_at=now - timedelta(minutes=2), next_run_at=now + timedelta(minutes=28)
    )
    schedule.refresh_from_db()
    next_run = timezone.localtime(schedule.next_run_at)
    response = admin_client.post(
        reverse("admin:jobs_schedule_change", args=[schedule.pk]),
        {
            "next_run_at_0": next_run.strftime("%Y-%m-%d"),
            "next_run_at_1": next_run.strftime("%H:%M:%S"),
            "enabled": "on",
            "minutes_between_runs": "5",
            "inactivity_timeout_minutes": "720",
            "max_attempts": "10",
            "wake_on_change": "on",
            "webhook_debounce_seconds": "5",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    schedule.refresh_from_db()
    assert abs((schedule.next_run_at - (now + timedelta(minutes=3))).total_seconds()) < 5
    shown = date_format(timezone.localtime(schedule.next_run_at), "DATETIME_FORMAT")
    assert shown in schedule_list(admin_client)


def test_a_hold_is_checked_when_two_companies_are_enabled(sandbox_connections):
    """The check opened "the" Business Central connection: with two companies enabled it raised, and every hold slept
    through its changes. It asks the mapping's own company."""
    bc_a, _dataverse = sandbox_connections
    bc_b = Connection.objects.get(pk=bc_a.pk)
    bc_b.pk, bc_b.name = None, "Second company"
    bc_b.save()  # a second enabled Business Central connection: a second company (README "Several companies")
    TableMapping.objects.filter(company__isnull=True).update(company=bc_a)
    mapping = TableMapping.objects.get(name="CUSTOMER", company=bc_a)
    now = timezone.now()
    Schedule.objects.filter(table_mapping=mapping).update(
        enabled=True,
        wake_on_change=True,
        state=ScheduleState.ON_HOLD,
        next_run_at=now + timedelta(hours=12),
        checked_at=now - timedelta(days=1),
        last_finished_at=now - timedelta(days=1),
    )
    schedules_check_on_hold(now=now)
    schedule = Schedule.objects.get(table_mapping=mapping)
    # No watermark yet: every customer is a change waiting, so the hold must end.
    assert "could not check" not in schedule.last_message, schedule.last_message
    assert schedule.state == ScheduleState.READY
