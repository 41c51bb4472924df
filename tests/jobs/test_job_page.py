"""The job page while and after a run: what a preview would do, a cancel on its way, the job's errors."""

import re

import pytest
from django.urls import reverse

from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.services import sync_job_cancel, sync_jobs_create, sync_jobs_run

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"]), pytest.mark.usefixtures("sandbox_connections")]


def run(mapping, **options):
    (job,) = sync_jobs_create(mapping=mapping, direction="to_dataverse", **options)
    sync_jobs_run(job_ids=[job.pk])
    job.refresh_from_db()
    return job


def progress(admin_client, job) -> str:
    return admin_client.get(reverse("admin:jobs_syncjob_progress", args=[job.pk])).content.decode()


def test_a_preview_shows_what_it_would_do_in_its_counts_not_zeros(admin_client, customer):
    job = run(customer, kind=JobKind.FULL, dry_run=True)
    would_insert = job.preview["counts"]["insert"]
    assert would_insert > 0 and job.inserted == 0

    fragment = progress(admin_client, job)

    header, counts = fragment.split('class="syncjob-counts">')[1].split("</table>")[0].split("</tr>")[:2]
    column = re.findall(r"<th>(.*?)</th>", header).index("Would insert")
    assert re.findall(r"<td>(.*?)</td>", counts)[column] == str(would_insert)
    assert "<th>Inserted</th>" not in fragment  # the real counters of a preview are all zero: not shown


def test_the_job_page_title_does_not_carry_a_status_that_goes_stale(admin_client, customer):
    job = run(customer, kind=JobKind.MODIFIED)
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    title = page.split("<title>")[1].split("</title>")[0]
    assert "Succeeded" not in title and "Running" not in title and f"#{job.pk} CUSTOMER" in title


def test_a_cancel_asked_while_a_job_runs_is_shown_until_the_run_stops(admin_client, customer):
    (job,) = sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse")
    SyncJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    job.refresh_from_db()
    sync_job_cancel(job=job)

    assert "Cancel requested" in progress(admin_client, job)

    SyncJob.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)
    assert "Cancel requested" not in progress(admin_client, job)


def test_the_errors_link_refreshes_with_the_progress_and_counts_the_jobs_errors(admin_client, customer):
    # Salespeople are not coupled yet: customers with one fail, naming the salesperson to couple first.
    customer.field_mappings.filter(lookup_mapping__name="SALESPEOPLE").update(enabled=True)
    job = run(customer, kind=JobKind.MODIFIED)
    assert job.failed > 0 and SyncError.objects.filter(job=job).count() == job.failed

    fragment = progress(admin_client, job)

    # Every error of the job, the resolved included (the history), since the count is the job's.
    errors_url = reverse("admin:jobs_syncerror_changelist") + f"?job={job.pk}&state=all"
    assert f'href="{errors_url.replace("&", "&amp;")}">{job.failed} errors of this job</a>' in fragment
    errors_page = admin_client.get(errors_url).content.decode()
    assert f'name="job" value="{job.pk}"' in errors_page  # the filter form shows which job the list is narrowed to
    assert errors_page.count('class="field-job_link"') == job.failed


def test_the_error_list_cuts_long_messages_between_words_and_presets_no_class_to_retry(admin_client, customer):
    from jobs.models import SyncJob as Job

    job = Job.objects.create(table_mapping=customer, direction="to_dataverse", status=JobStatus.PARTLY_FAILED)
    words = " ".join(f"word{i}" for i in range(60))
    SyncError.objects.create(
        job=job, table_mapping=customer, direction="to_dataverse", error_class="validation", message=words
    )

    page = admin_client.get(reverse("admin:jobs_syncerror_changelist")).content.decode()

    shown = page.split('class="field-short_message">')[1].split("</td>")[0]
    assert shown.endswith(" …") and shown[: -len(" …")].split()[-1] in words.split()
    assert (
        '<option value="">Choose a class…</option>' in page and "selected" not in page.split("Choose a class")[1][:300]
    )


def test_after_a_run_the_page_says_one_thing_in_one_place(admin_client, admin_user, customer):
    """It said "Succeeded … 7 HTTP requests" in the live box and "Finished at: -", "HTTP requests: 0" below."""
    (job,) = sync_jobs_create(mapping=customer, kind=JobKind.MODIFIED, direction="to_dataverse", user=admin_user)
    sync_jobs_run(job_ids=[job.pk])
    job.refresh_from_db()
    assert job.http_requests > 0 and job.finished_at

    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()

    assert page.count("Finished at") == 1 and page.count("HTTP requests") == 1
    finished = page.split('class="syncjob-finished">')[1].split("</td>")[0]
    assert finished.startswith(f"{job.finished_at:%Y-%m-%d}") and finished.endswith(" UTC")  # with its time zone
    requests = page.split('class="syncjob-requests">')[1].split("</td>")[0]
    assert requests.startswith(f"{job.http_requests} (")
    took = page.split('class="syncjob-duration">')[1].split("</td>")[0]
    assert re.fullmatch(r"\d+ seconds?|less than a second", took), took  # a short run in seconds, not "0 minutes"
    assert page.split('class="syncjob-requester">')[1].split("</td>")[0] == admin_user.username


def test_requested_by_says_schedule_or_change_notification(admin_client, customer):
    from jobs.choices import RequestedVia
    from jobs.scheduling.schedules import schedule_start_run
    from jobs.services import sync_enqueue

    schedule = customer.schedule
    schedule.enabled = True
    schedule.save()
    assert schedule_start_run(schedule=schedule, now=schedule.next_run_at)
    scheduled = SyncJob.objects.filter(pk__in=type(schedule).objects.get(pk=schedule.pk).run_job_ids).first()
    notified = sync_enqueue(mapping=customer, direction="to_dataverse", via=RequestedVia.CHANGE_NOTIFICATION)[0]

    assert "The schedule" in progress(admin_client, scheduled)
    assert "A change notification" in progress(admin_client, notified)


def test_durations_read_as_people_say_them():
    from jobs.models import seconds_text

    assert [seconds_text(s) for s in (0.3, 1, 20, 60, 185, 7260)] == [
        "less than a second",
        "1 second",
        "20 seconds",
        "1 minute",
        "3 minutes 5 seconds",
        "2 hours 1 minute",
    ]


def test_a_running_job_shows_a_progress_bar_an_estimate_and_a_cancel_button_that_stops_it(
    admin_client, client, django_user_model, customer
):
    from datetime import timedelta

    from django.utils import timezone

    (job,) = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse")
    SyncJob.objects.filter(pk=job.pk).update(
        status=JobStatus.RUNNING,
        started_at=timezone.now() - timedelta(seconds=30),
        progress_done=25,
        progress_total=100,
    )
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    assert '<progress max="100" value="25">' in page
    assert re.search(r"about 1 minute 3\d seconds left", page)  # 25 in 30 s: 75 more take about 90 s
    cancel_url = reverse("admin:jobs_syncjob_cancel", args=[job.pk])
    form = page.split(f'action="{cancel_url}"')[1].split("</form>")[0]
    assert "csrfmiddlewaretoken" in form and 'value="Cancel this job"' in form
    # The Cancel form is not inside the admin's own form (forms do not nest: the browser would drop it).
    assert page.index(cancel_url) < page.index('id="syncjob_form"')

    # Without the run-sync permission: no button, and the POST is refused with nothing changed.
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_syncjob"))
    client.force_login(viewer)
    assert cancel_url not in client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    assert client.post(cancel_url).status_code == 403
    assert admin_client.get(cancel_url).status_code == 403  # GET never acts
    job.refresh_from_db()
    assert not job.cancel_requested

    # The button asks first, saying what stopping leaves behind; nothing is cancelled until confirmed there.
    asked = admin_client.post(cancel_url).content.decode()
    job.refresh_from_db()
    assert not job.cancel_requested
    assert f"Cancel job #{job.pk}: are you sure?" in asked and 'value="Yes, cancel"' in asked
    assert "A cancelled full synchronization is not complete" in asked
    admin_client.post(cancel_url, {"confirm": "yes"})
    job.refresh_from_db()
    assert job.cancel_requested
    # The run stops before it writes its next page: nothing of this full synchronization is written.
    SyncJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED, progress_done=0, progress_total=None)
    sync_jobs_run(job_ids=[job.pk])
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.inserted == 0 and job.counts_reconcile


def test_the_job_list_shows_what_a_preview_would_do_not_zeros(admin_client, customer):
    job = run(customer, kind=JobKind.FULL, dry_run=True)
    would_insert = job.preview["counts"]["insert"]
    assert would_insert > 0

    page = admin_client.get(reverse("admin:jobs_syncjob_changelist")).content.decode()

    inserted = page.split('class="field-inserted_count">')[1].split("</td>")[0]
    assert inserted == f'<span class="would" title="a preview: would be inserted">({would_insert})</span>'


def test_a_real_run_is_not_described_as_a_preview_on_its_page(admin_client, customer):
    """The page said "A preview: planned, nothing written" (the field's help text) on a run that wrote records."""
    real = run(customer, kind=JobKind.FULL)
    preview = run(customer, kind=JobKind.FULL, dry_run=True)
    assert real.inserted > 0

    def page(job):
        return admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()

    assert "nothing written" not in page(real) and "A run: written to the systems" in page(real)
    assert "A preview: planned, nothing written" in page(preview)


def test_a_running_run_of_modified_records_gives_a_time_left_it_can_stand_by(admin_client, customer, monkeypatch):
    """A run of modified records learns its size only by reading. While it runs (the real engine, stopped between
    pages to look at its page and the dashboard), the job page gives no number as if known: the first run says the
    time left is unknown, with its pace; the next one estimates it from the last comparable run, saying so."""
    from jobs.engine.pipeline import DirectionRun

    seen: list[tuple[int, str, str]] = []
    check_cancelled = DirectionRun.check_cancelled

    def look_at_the_pages(run):  # called before each page is written, while the job runs
        job = SyncJob.objects.get(pk=run.job.pk)
        if job.progress_done and job.status == JobStatus.RUNNING:
            dashboard = admin_client.get(reverse("admin:index")).content.decode()
            time_left = dashboard.split(f'<tr data-job="{job.pk}">')[1].split('class="ops-time-left">')[1]
            seen.append((job.progress_done, progress(admin_client, job), time_left.split("</td>")[0]))
        check_cancelled(run)

    monkeypatch.setattr(DirectionRun, "check_cancelled", look_at_the_pages)
    from connectors.models import Connection

    Connection.objects.update(page_size=3)  # several pages, to look at it between them

    first = run(customer, kind=JobKind.MODIFIED)
    assert first.records_read >= 10 and len(seen) >= 2
    for done, fragment, dashboard in seen:
        assert f"time left unknown: {done} records read so far, " in fragment
        assert "about" not in fragment.split('class="syncjob-bar">')[1].split("</p>")[0]
        assert f"time left unknown: {done} records read so far, " in dashboard

    # The next run reads the same records again (watermark reset): its estimate names the last run and its basis.
    seen.clear()
    TableMapping = type(customer)
    TableMapping.objects.filter(pk=customer.pk).update(bc_watermark=None)
    second = run(customer, kind=JobKind.MODIFIED)
    assert second.records_read == first.records_read and len(seen) >= 2
    for done, fragment, dashboard in seen:
        eta = re.search(r'<span class="syncjob-eta">(.*?)</span>', fragment).group(1)
        assert re.fullmatch(
            rf"about [\w ]+ left if it reads as many records as the last such run, #{first.pk}, read "
            rf"{first.records_read} records in [\w ]+; {done} records read so far, [\d.]+ per second",
            eta,
        ), eta
        # The dashboard says the same (read a moment later: its pace may differ in the last digits).
        assert eta.split(" left if")[1].rsplit(",", 1)[0] in dashboard
    # Finished: no estimate any more.
    assert 'class="syncjob-eta"' not in progress(admin_client, second)


def test_cancel_asks_first_saying_what_the_run_has_written_and_that_stays(
    admin_client, client, django_user_model, customer, monkeypatch
):
    """Cancel on a run midway (the real engine, stopped between pages): the page says how many records it has
    written so far and that they stay; once confirmed the run stops there, and those records are what it wrote."""
    from connectors.clients import open_client
    from connectors.models import Connection
    from coupling.models import Coupling
    from jobs.engine.pipeline import DirectionRun

    Connection.objects.update(page_size=3)
    bc = Connection.objects.get(kind="business_central")
    check_cancelled = DirectionRun.check_cancelled
    asked: list[str] = []
    written_when_asked: list[int] = []
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_syncjob"))
    client.force_login(viewer)

    def cancel_after_two_pages(run):
        job = SyncJob.objects.get(pk=run.job.pk)
        if job.inserted >= 6 and not asked:
            url = reverse("admin:jobs_syncjob_cancel", args=[job.pk])
            # Someone who may only view jobs is refused, the page and the confirm alike.
            assert client.post(url).status_code == 403
            assert client.post(url, {"confirm": "yes"}).status_code == 403
            assert not SyncJob.objects.get(pk=job.pk).cancel_requested
            written_when_asked.append(job.inserted)
            asked.append(admin_client.post(url).content.decode())
            assert not SyncJob.objects.get(pk=job.pk).cancel_requested  # asking is not cancelling
            admin_client.post(url, {"confirm": "yes"})
        check_cancelled(run)

    monkeypatch.setattr(DirectionRun, "check_cancelled", cancel_after_two_pages)
    job = run(customer, kind=JobKind.MODIFIED)

    (page,) = asked
    (written,) = written_when_asked
    assert f"the {written} record(s) written so far stay written, and so do the writes already sent" in page
    assert f"<td>{written} / 0 / 0 / 0</td>" in page
    assert "does not move the mapping&#x27;s watermark" in page or "does not move the mapping's watermark" in page
    # What the page said is what happened: the run stopped there; what it had written, and the writes it had sent
    # already (the next page's, sent while the last was saved), stay written, counted and coupled; no page after.
    assert job.status == JobStatus.CANCELLED
    assert written <= job.inserted <= written + 2 * 3, (written, job.inserted)  # at most the pages in flight
    customers = [row for page in open_client(bc).read_pages("customers", select=["id"]) for row in page.rows]
    assert job.inserted < len(customers)  # it stopped early: no page after the ones sent
    assert Coupling.objects.filter(table_mapping=customer).count() == job.inserted
