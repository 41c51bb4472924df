"""Times and durations as the admin pages say them: every date and time with its zone in one format (a list said
"Dec. 5, 2026, 5:21 a.m." while a job page said "2026-12-05 05:21:00 UTC"), and a reconciliation's duration in
seconds when under a minute (it said "in 0 minutes")."""

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
