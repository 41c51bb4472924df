"""Who or what started each job, said exactly on the job page and list: the user, the schedule, the user through
"Run now" on the schedule (which asks first, as every bulk-writing action), or a reconciliation's bulk action (linked).
"""

import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from coupling.models import Coupling
from jobs.choices import JobStatus, RequestedVia
from jobs.models import Reconciliation, Schedule, ScheduleState, SyncJob
from jobs.reconciliation.services import reconciliation_couple_by_match, reconciliation_uncouple_orphans
from mappings.models import TableMapping
from tests.jobs.test_bulk_confirmations import table
from tests.previewing import as_data, hidden_fields, run_previews

pytestmark = pytest.mark.django_db

SCHEDULES = "admin:jobs_schedule_changelist"


def requester(admin_client, job) -> str:
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    return page.split('class="syncjob-requester">')[1].split("</td>")[0]


def listed_requester(admin_client, job) -> str:
    page = admin_client.get(reverse("admin:jobs_syncjob_changelist")).content.decode()
    row = page.split(f"/admin/jobs/syncjob/{job.pk}/change/")[1].split("</tr>")[0]
    return row.split('class="requester">')[1].split("</small>")[0]


@pytest.fixture
def currency_schedule():
    schedule = Schedule.objects.get(table_mapping__name="CURRENCY")
    schedule.enabled = True
    schedule.state = ScheduleState.READY
    schedule.next_run_at = timezone.now() + timedelta(hours=1)
    schedule.save()
    return schedule


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_run_now_asks_first_then_queues_the_runs_which_name_the_user(
    admin_client, admin_user, currency_schedule, sandbox_connections
):
    paused = Schedule.objects.get(table_mapping__name="VENDOR")
    Schedule.objects.filter(pk=paused.pk).update(enabled=False)
    action = {"action": "run_now", "_selected_action": [currency_schedule.pk, paused.pk], "index": "0"}

    asked = admin_client.post(reverse(SCHEDULES), action)

    html = asked.content.decode()
    assert asked.status_code == 200 and "Run the schedules now: are you sure?" in html
    assert not SyncJob.objects.filter(dry_run=False).exists()  # nothing but its preview queued before the confirm
    currency_schedule.refresh_from_db()
    assert currency_schedule.state == ScheduleState.READY and not currency_schedule.run_job_ids
    assert [row[:2] for row in table(html)] == [["CURRENCY", "To Dataverse"]]  # the paused one starts nothing
    assert "1 selected schedule(s) are paused or running already: they are left alone." in html
    assert "queued" in table(html)[0][-1]
    run_previews()

    admin_client.post(reverse(SCHEDULES), as_data(hidden_fields(html, "bulk-confirm")))

    (job,) = SyncJob.objects.filter(dry_run=False)
    currency_schedule.refresh_from_db()
    assert currency_schedule.state == ScheduleState.RUNNING and currency_schedule.run_job_ids == [job.pk]
    assert (job.table_mapping.name, job.status, job.dry_run) == ("CURRENCY", JobStatus.QUEUED, False)
    assert (job.requested_via, job.requested_by) == (RequestedVia.RUN_NOW, admin_user)
    expected = f"{admin_user.username}, with “Run now” on the schedule"
    assert requester(admin_client, job) == expected
    assert listed_requester(admin_client, job) == expected


def test_the_schedule_s_own_run_says_the_schedule(admin_client, currency_schedule):
    from jobs.scheduling.schedules import schedule_start_run

    Schedule.objects.filter(pk=currency_schedule.pk).update(next_run_at=timezone.now())
    currency_schedule.refresh_from_db()
    assert schedule_start_run(schedule=currency_schedule)
    (job,) = SyncJob.objects.all()
    assert requester(admin_client, job) == listed_requester(admin_client, job) == "The schedule"


def test_jobs_of_a_reconciliation_s_bulk_actions_name_it_and_link_to_it(admin_client, admin_user):
    customer = TableMapping.objects.get(name="CUSTOMER")
    orphan = Coupling.objects.create(table_mapping=customer, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4())
    reconciliation = Reconciliation.objects.create(
        table_mapping=customer,
        requested_by=admin_user,
        status=JobStatus.SUCCEEDED,
        findings={"orphans": [[orphan.pk, "both"]]},
    )

    coupling_job = reconciliation_couple_by_match(reconciliation=reconciliation, user=admin_user)
    uncoupling_job = reconciliation_uncouple_orphans(reconciliation=reconciliation, user=admin_user)

    link = (
        f'<a class="syncjob-reconciliation" href="/admin/jobs/reconciliation/{reconciliation.pk}/change/">'
        f"reconciliation #{reconciliation.pk}</a>"
    )
    for job in (coupling_job, uncoupling_job):
        job.refresh_from_db()
        assert (job.reconciliation, job.requested_by, job.requested_via) == (
            reconciliation,
            admin_user,
            RequestedVia.RECONCILIATION,
        )
        said = f"{admin_user.username}, from a bulk action of {link}"
        assert requester(admin_client, job) == said
        assert listed_requester(admin_client, job) == said

    # The reconciliation's page says who started it, without the schedule's help text, and lists the jobs.
    page = admin_client.get(reverse("admin:jobs_reconciliation_change", args=[reconciliation.pk])).content.decode()
    assert "Started by the daily schedule" not in page
    started_by = re.search(r"Started by:</label>\s*<div class=\"readonly\">(.*?)</div>", page, flags=re.S).group(1)
    assert started_by == admin_user.username
    jobs_started = page.split("Jobs started from it:</label>")[1].split("</div>")[0]
    assert f"/admin/jobs/syncjob/{coupling_job.pk}/change/" in jobs_started
    assert f"/admin/jobs/syncjob/{uncoupling_job.pk}/change/" in jobs_started

    daily = Reconciliation.objects.create(table_mapping=customer, scheduled=True, status=JobStatus.SUCCEEDED)
    page = admin_client.get(reverse("admin:jobs_reconciliation_change", args=[daily.pk])).content.decode()
    started_by = re.search(r"Started by:</label>\s*<div class=\"readonly\">(.*?)</div>", page, flags=re.S).group(1)
    assert started_by == "the daily schedule"
