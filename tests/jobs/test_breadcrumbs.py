"""The breadcrumbs of the synchronization pages name each step once: the app ("Synchronization") is not its model
("Sync jobs"), which read "Sync jobs › Sync jobs"."""

import itertools
import re
from html import unescape

import pytest
from django.urls import reverse

from jobs.choices import ErrorClass
from jobs.models import SyncError, SyncJob
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db


def breadcrumbs(client, url: str) -> list[str]:
    html = client.get(url).content.decode()
    trail = re.search(r'<div class="breadcrumbs">(.*?)</div>', html, flags=re.S).group(1)
    return [unescape(re.sub(r"<[^>]+>", "", step)).strip() for step in re.split(r"&rsaquo;|›", trail)]


def test_no_step_of_the_sync_pages_breadcrumbs_repeats_the_one_before(admin_client):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    job = SyncJob.objects.create(table_mapping=mapping, direction="to_dataverse")
    error = SyncError.objects.create(
        job=job, table_mapping=mapping, direction="to_dataverse", error_class=ErrorClass.VALIDATION, message="x"
    )
    pages = {
        "job list": reverse("admin:jobs_syncjob_changelist"),
        "job page": reverse("admin:jobs_syncjob_change", args=[job.pk]),
        "error list": reverse("admin:jobs_syncerror_changelist"),
        "error page": reverse("admin:jobs_syncerror_change", args=[error.pk]),
        "app index": reverse("admin:app_list", args=["jobs"]),
    }
    trails = {name: breadcrumbs(admin_client, url) for name, url in pages.items()}

    assert trails["job list"] == ["Home", "Synchronization", "Sync jobs"]
    assert trails["job page"][:3] == ["Home", "Synchronization", "Sync jobs"] and str(job.pk) in trails["job page"][3]
    assert trails["error list"] == ["Home", "Synchronization", "Sync errors"]
    assert trails["app index"] == ["Home", "Synchronization"]
    for name, trail in trails.items():
        assert all(a != b for a, b in itertools.pairwise(trail)), (name, trail)
