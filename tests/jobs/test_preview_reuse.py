"""Opening a run's confirmation again shows the previews it made before while they run or still hold, instead of
queueing another set each time (jobs.services.sync_previews_start): the sync job list keeps one set of previews per run
and user. "Preview again", or previews that no longer hold, make a new set and remove the superseded one."""

import re

import pytest
from django.urls import reverse

from jobs.choices import JobStatus
from jobs.models import SyncJob
from mappings.models import TableMapping
from tests.previewing import as_data, hidden_fields, run_previews

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"])]

MAPPINGS = "admin:mappings_tablemapping_changelist"


def shown_previews(html: str) -> list[int]:
    """The preview jobs the page shows, as its rows name them."""
    return [int(pk) for pk in re.findall(r"<td>job #(\d+):", html)]


def previews_in_job_list(client) -> list[int]:
    """The previews the sync job list shows (what an administrator sees piling up, or not)."""
    html = client.get(reverse("admin:jobs_syncjob_changelist"), {"dry_run__exact": "1"}).content.decode()
    return sorted(int(pk) for pk in set(re.findall(r"/admin/jobs/syncjob/(\d+)/change/", html)))


def test_opening_the_confirmation_again_reuses_its_previews(admin_client, sandbox_connections):
    customer = TableMapping.objects.get(name="CUSTOMER")
    action = {"action": "synchronize_modified_records", "_selected_action": [customer.pk]}

    first = admin_client.post(reverse(MAPPINGS), action).content.decode()
    shown = shown_previews(first)
    assert len(shown) == 4  # CURRENCY, SALESPEOPLE, then CUSTOMER both ways
    # Opened again while they are queued: the same previews, none added.
    assert shown_previews(admin_client.post(reverse(MAPPINGS), action).content.decode()) == shown
    assert previews_in_job_list(admin_client) == shown

    run_previews()
    again = admin_client.post(reverse(MAPPINGS), action).content.decode()
    # Finished and still holding: the same set again, with its counts and Confirm enabled.
    assert shown_previews(again) == shown
    assert all(status == JobStatus.SUCCEEDED for status in SyncJob.objects.values_list("status", flat=True))
    assert previews_in_job_list(admin_client) == shown

    # "Preview again" asks for new ones: the old set goes, one set stays.
    renewed = admin_client.post(reverse(MAPPINGS), as_data(hidden_fields(again, "bulk-preview"))).content.decode()
    new = shown_previews(renewed)
    assert len(new) == 4 and not set(new) & set(shown)
    run_previews()
    assert previews_in_job_list(admin_client) == new

    # Another user's confirmation of the same run is theirs: it neither reuses nor removes these.
    from django.contrib.auth import get_user_model

    other = get_user_model().objects.create_superuser("other", "other@example.com", "pw")
    admin_client.force_login(other)
    theirs = shown_previews(admin_client.post(reverse(MAPPINGS), action).content.decode())
    assert len(theirs) == 4 and not set(theirs) & set(new)
    assert SyncJob.objects.filter(pk__in=new).count() == 4


def test_previews_that_no_longer_hold_are_replaced_not_added_to(admin_client, sandbox_connections):
    from sandbox import testing as sandbox
    from tests.jobs.test_preview_chain import all_rows

    bc, _ = sandbox_connections
    currency = TableMapping.objects.get(name="CURRENCY")
    action = {"action": "synchronize_modified_records", "_selected_action": [currency.pk]}
    shown = shown_previews(admin_client.post(reverse(MAPPINGS), action).content.decode())
    run_previews()

    sandbox.edit_as_another_user("bc", "currencies", all_rows(bc, "currencies")[0]["id"], displayName="Changed")
    reopened = admin_client.post(reverse(MAPPINGS), action).content.decode()
    new = shown_previews(reopened)
    assert new and not set(new) & set(shown)  # the old preview no longer says what the run would do
    assert previews_in_job_list(admin_client) == new
    assert not SyncJob.objects.filter(pk__in=shown).exists()
