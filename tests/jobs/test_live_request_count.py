"""The page of a running job shows the HTTP requests its run has made so far, not "0" until it ends: the figure is
what the sandbox received from the run, page by page and at the end."""

import re

import pytest
from django.urls import reverse

from jobs.choices import JobKind
from jobs.services import sync_jobs_create, sync_jobs_run

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"])]


def shown(admin_client, job) -> tuple[str, int, str]:
    """The job page's live box: its status, the HTTP requests figure and its label."""
    html = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    box = html.split('class="syncjob-progress"')[1]
    status = re.search(r"<strong>([^<]+)</strong>", box).group(1)
    label, figure = re.search(r'<th>(HTTP requests[^<]*)</th><td class="syncjob-requests">(\d+)', box).groups()
    return status, int(figure), label


def test_a_running_job_shows_the_requests_made_so_far(
    admin_client, customer, sandbox_connections, sandbox_http, monkeypatch
):
    received = []
    handle = sandbox_http.handle_request

    def counting(request):
        received.append(request.url.path)
        return handle(request)

    monkeypatch.setattr(sandbox_http, "handle_request", counting)
    (job,) = sync_jobs_create(mapping=customer, kind=JobKind.FULL, direction="to_dataverse")
    seen = []

    def look_at_the_page(running_job):
        seen.append((len(received), *shown(admin_client, running_job)))

    sync_jobs_run(job_ids=[job.pk], on_progress=look_at_the_page)

    assert len(seen) >= 3  # pages of 5: several looks while it ran
    for sent, status, figure, label in seen:
        assert status == "Running" and label == "HTTP requests so far"
        # What the run had sent when the page was drawn; a read-ahead request may be on its way, counted once answered.
        assert sent - 2 <= figure <= sent
    assert seen[-1][2] > seen[0][2] > 0
    job.refresh_from_db()
    status, figure, label = shown(admin_client, job)
    assert (status, label) == ("Succeeded", "HTTP requests")
    assert figure == job.http_requests == len(received)
