"""A run's confirmation previews the run and runs it only once confirmed with those previews (jobs/admin/confirm.py):
helpers that do what an administrator does on that page, for tests of what happens after."""

from __future__ import annotations

import re

from jobs.choices import JobStatus
from jobs.models import SyncJob
from jobs.services import sync_jobs_run


def hidden_fields(html: str, form_class: str) -> list[tuple[str, str]]:
    form = html.split(f'class="{form_class}"')[1].split("</form>")[0]
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)


def as_data(fields) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return data


def run_previews() -> list[SyncJob]:
    """Run the queued previews (as the worker does for the page), in order; return them finished."""
    ids = list(
        SyncJob.objects.filter(status=JobStatus.QUEUED, dry_run=True).order_by("pk").values_list("pk", flat=True)
    )
    sync_jobs_run(job_ids=ids)
    return list(SyncJob.objects.filter(pk__in=ids).order_by("pk"))


def confirm_after_preview(client, url: str, data: dict, **post_options):
    """Ask for a run (its page previews it), let the previews finish, then press Confirm: the confirmed response."""
    asked = client.post(url, data)
    assert asked.status_code == 200, asked.status_code
    html = asked.content.decode()
    run_previews()
    return client.post(url, as_data(hidden_fields(html, "bulk-confirm")), **post_options)
