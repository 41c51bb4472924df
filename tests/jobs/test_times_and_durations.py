"""Times and durations as the admin pages say them: every date and time with its zone in one format (a list said
"Dec. 5, 2026, 5:21 a.m." while a job page said "2026-12-05 05:21:00 UTC"), and a reconciliation's duration in
seconds when under a minute (it said "in 0 minutes")."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from jobs.choices import JobStatus
from jobs.models import Reconciliation
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

STARTED = datetime(2026, 12, 5, 5, 21, 7, tzinfo=UTC)


@pytest.fixture
def reconciliation():
    done = Reconciliation.objects.create(
        table_mapping=TableMapping.objects.get(name="CUSTOMER"),
        status=JobStatus.SUCCEEDED,
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=20),
    )
    Reconciliation.objects.filter(pk=done.pk).update(queued_at=STARTED)  # auto_now_add ignores the value given
    return done


def test_a_reconciliation_of_20_seconds_says_20_seconds(admin_client, reconciliation):
    page = admin_client.get(reverse("admin:jobs_reconciliation_change", args=[reconciliation.pk])).content.decode()
    assert "in 20 seconds" in page
    assert "0 minutes" not in page


def test_the_list_and_the_object_page_give_times_with_their_zone_as_the_job_pages_do(admin_client, reconciliation):
    listed = admin_client.get(reverse("admin:jobs_reconciliation_changelist")).content.decode()
    shown = admin_client.get(reverse("admin:jobs_reconciliation_change", args=[reconciliation.pk])).content.decode()
    for page in (listed, shown):
        assert "2026-12-05 05:21 UTC" in page  # queued at
        assert "2026-12-05 05:21 UTC" in page.split("2026-12-05 05:21 UTC", 1)[1]  # finished at, 20 s later
        assert "a.m." not in page and "Dec. 5" not in page


# Any date in a page's visible text, with what follows it.
A_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[^<]{0,12}")
ADMIN_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC(?![:\d])")
# Django's own ways, which these pages used: "Dec. 5, 2026, 5:21 a.m.", timesince's "3 hours, 2 minutes".
OTHER_WAYS = re.compile(
    r"\b[ap]\.m\.|\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\.? \d|\d+\xa0(hour|minute|day)"
)


def visible_text(html: str) -> str:
    """The page's text as a person reads it: no scripts, styles, tags or attributes (hrefs carry ISO dates)."""
    html = re.sub(r"<(script|style|template)\b.*?</\1>", "", html, flags=re.S)
    html = re.sub(r'<option value="[^"]*"', "<option", html)
    return re.sub(r"<[^>]+>", " ", html)


def test_every_page_that_shows_a_time_writes_it_one_way(admin_client):
    """Job list and page, error list (history) and page, dashboard, schedule list: each time with its date, hour,
    minute and zone, "2026-12-05 05:21 UTC", and no other form (seconds, no zone, "3 hours, 2 minutes ago")."""
    from jobs.choices import ErrorState, JobKind
    from jobs.models import Schedule, ScheduleState, SyncError, SyncJob

    customer = TableMapping.objects.get(name="CUSTOMER")
    done = SyncJob.objects.create(table_mapping=customer, direction="to_dataverse", kind=JobKind.MODIFIED)
    SyncJob.objects.filter(pk=done.pk).update(
        queued_at=STARTED,
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=20),
        status=JobStatus.PARTLY_FAILED,
        inserted=1,
        failed=1,
        progress_done=2,
    )
    running = SyncJob.objects.create(table_mapping=customer, direction="from_dataverse", status=JobStatus.RUNNING)
    SyncJob.objects.filter(pk=running.pk).update(started_at=STARTED, progress_done=5)
    error = SyncError.objects.create(
        job=done, table_mapping=customer, direction="to_dataverse", error_class="validation", message="Bad value."
    )
    SyncError.objects.filter(pk=error.pk).update(
        created_at=STARTED, state=ErrorState.RESOLVED_BY_HAND, resolved_at=STARTED + timedelta(minutes=3)
    )
    Schedule.objects.filter(table_mapping=customer).update(
        state=ScheduleState.ON_HOLD,
        wake_on_change=True,
        next_run_at=STARTED + timedelta(hours=12),
        checked_at=STARTED + timedelta(minutes=30),
        last_finished_at=STARTED,
    )

    pages = {
        "job list": reverse("admin:jobs_syncjob_changelist"),
        "job page": reverse("admin:jobs_syncjob_change", args=[done.pk]),
        "running job page": reverse("admin:jobs_syncjob_change", args=[running.pk]),
        "error list": reverse("admin:jobs_syncerror_changelist") + "?state=all",
        "error page": reverse("admin:jobs_syncerror_change", args=[error.pk]),
        "dashboard": reverse("admin:index"),
        "schedule list": reverse("admin:jobs_schedule_changelist"),
    }
    for name, url in pages.items():
        text = visible_text(admin_client.get(url).content.decode())
        dates = A_DATE.findall(text)
        assert dates, f"{name}: no time shown"
        other = [d for d in dates if not ADMIN_TIME.match(d)]
        assert not other, f"{name}: times not written as 2026-12-05 05:21 UTC: {other}"
        assert not OTHER_WAYS.search(text), f"{name}: {OTHER_WAYS.search(text).group(0)!r}"
    # The times each page is about are there, in that form.
    assert "2026-12-05 05:21 UTC" in visible_text(admin_client.get(pages["job list"]).content.decode())
    assert "2026-12-05 05:24 UTC" in visible_text(admin_client.get(pages["error list"]).content.decode())
    dashboard = visible_text(admin_client.get(pages["dashboard"]).content.decode())
    assert "2026-12-05 05:21 UTC" in dashboard  # the last run's end and the running job's start, with "(… ago)"
    schedules = visible_text(admin_client.get(pages["schedule list"]).content.decode())
    assert "last checked 2026-12-05 05:51 UTC" in schedules and "else at 2026-12-05 17:21 UTC" in schedules
