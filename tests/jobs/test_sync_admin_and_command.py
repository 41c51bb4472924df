"""What a user sees of sync jobs: the sync actions and pages of the table mapping admin, the run-sync permission,
the job page and its progress fragment, `manage.py sync`, and the removal of old jobs.

Real parts throughout: the sandbox over in-process HTTP, a real RQ worker, the real database.
"""

import re
from datetime import timedelta
from io import StringIO

import django_rq
import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.review import COUPLE_FIRST, FULL_SYNC, NOTHING
from jobs.services import (
    mappings_in_dependency_order,
    sync_enqueue,
    sync_jobs_create,
    sync_jobs_delete_old,
    sync_jobs_run,
)
from mappings.models import TableMapping
from tests.previewing import confirm_after_preview

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

SYNC_ACTIONS = {
    "synchronize_modified_records",
    "preview_modified_records",
    "run_full_synchronization",
    "preview_full_synchronization",
}


def count(connection, entity_set, filter=None):
    with open_client(connection) as client:
        return client.count(entity_set, filter=filter)


def sandbox_sizes(sandbox_connections):
    """How many records each table of either system holds: a write anywhere changes it."""
    bc, dataverse = sandbox_connections
    return {
        "bc": {
            name: count(bc, name)
            for name in ("currencies", "salespeoplePurchasers", "customers", "vendors", "contacts")
        },
        "dataverse": {name: count(dataverse, name) for name in ("transactioncurrencies", "accounts", "contacts")},
    }


def user_with(django_user_model, *permissions):
    user = django_user_model.objects.create_user("clerk", password="unused", is_staff=True)
    grant(user, *permissions)
    return user


def grant(user, *permissions):
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def action_choices(client):
    response = client.get(reverse("admin:mappings_tablemapping_changelist"))
    assert response.status_code == 200
    return {name for name, _ in response.context["action_form"].fields["action"].choices}


def job_link(job):
    return f'<a href="{reverse("admin:jobs_syncjob_change", args=[job.pk])}">#{job.pk} '


def runs(jobs):
    return [(job.table_mapping.name, job.direction) for job in jobs]


def queued_rq_job_ids():
    return set(django_rq.get_queue("default").job_ids)


# -- The four sync actions on the table mapping list ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind", "dry_run", "message"),
    [
        ("synchronize_modified_records", JobKind.MODIFIED, False, "Synchronization queued: sync jobs"),
        ("preview_modified_records", JobKind.MODIFIED, True, "Preview queued: sync jobs"),
        ("run_full_synchronization", JobKind.FULL, False, "Full synchronization queued: sync jobs"),
        ("preview_full_synchronization", JobKind.FULL, True, "Preview queued: sync jobs"),
    ],
)
def test_a_sync_action_queues_a_job_per_direction_for_the_user_and_the_worker_runs_them(
    admin_client,
    admin_user,
    sandbox_connections,
    customer,
    django_capture_on_commit_callbacks,
    rq_worker,
    action,
    kind,
    dry_run,
    message,
):
    bc, dataverse = sandbox_connections
    unblocked = count(bc, "customers", customer.table_filter)
    customer_accounts = count(dataverse, "accounts", customer.integration_table_filter)
    before = sandbox_sizes(sandbox_connections)

    url, data = reverse("admin:mappings_tablemapping_changelist"), {"action": action, "_selected_action": [customer.pk]}
    with django_capture_on_commit_callbacks(execute=True):
        if dry_run:
            response = admin_client.post(url, data, follow=True)
        else:  # a run asks first, with a preview of its jobs, and runs once confirmed on that preview
            response = confirm_after_preview(admin_client, url, data, follow=True)
            before = sandbox_sizes(sandbox_connections)  # the preview wrote nothing

    jobs = list(SyncJob.objects.filter(dry_run=dry_run, status=JobStatus.QUEUED).order_by("pk"))
    # A modified-records run brings the mappings CUSTOMER depends on first; a full synchronization is CUSTOMER alone.
    first = [("CURRENCY", "to_dataverse"), ("SALESPEOPLE", "from_dataverse")] if kind == JobKind.MODIFIED else []
    assert runs(jobs) == [*first, ("CUSTOMER", "to_dataverse"), ("CUSTOMER", "from_dataverse")]
    assert {(job.kind, job.dry_run, job.requested_by) for job in jobs} == {(kind, dry_run, admin_user)}
    html = response.content.decode()
    assert message in html
    assert all(job_link(job) in html for job in jobs)

    rq_worker()

    for job in jobs:
        job.refresh_from_db()
        assert job.status == JobStatus.SUCCEEDED, job.message
    to_dataverse, from_dataverse = jobs[-2:]
    if dry_run:
        assert sandbox_sizes(sandbox_connections) == before
        assert not Coupling.objects.filter(table_mapping=customer).exists()
        assert (to_dataverse.inserted, from_dataverse.inserted) == (0, 0)
        assert to_dataverse.preview["counts"]["insert"] == unblocked
        assert from_dataverse.preview["counts"]["insert"] == customer_accounts
    else:
        assert (to_dataverse.inserted, from_dataverse.inserted) == (unblocked, customer_accounts)
        after = sandbox_sizes(sandbox_connections)
        assert after["dataverse"]["accounts"] == before["dataverse"]["accounts"] + unblocked
        assert after["bc"]["customers"] == before["bc"]["customers"] + customer_accounts
        assert Coupling.objects.filter(table_mapping=customer).count() == unblocked + customer_accounts


def test_synchronizing_several_mappings_runs_each_shared_dependency_once_before_them_in_one_queued_job(
    admin_client, sandbox_connections, customer, django_capture_on_commit_callbacks
):
    vendor = TableMapping.objects.get(name="VENDOR")  # depends on CURRENCY and SALESPEOPLE too, as CUSTOMER does

    with django_capture_on_commit_callbacks(execute=True):
        confirm_after_preview(
            admin_client,
            reverse("admin:mappings_tablemapping_changelist"),
            {"action": "synchronize_modified_records", "_selected_action": [vendor.pk, customer.pk]},
        )

    jobs = list(SyncJob.objects.filter(dry_run=False).order_by("pk"))
    names = [job.table_mapping.name for job in jobs]
    assert names.count("CURRENCY") == 1 and names.count("SALESPEOPLE") == 1
    assert names.index("CURRENCY") < names.index("CUSTOMER") and names.index("SALESPEOPLE") < names.index("VENDOR")
    assert len({job.rq_job_id for job in jobs}) == 1 and jobs[0].rq_job_id in queued_rq_job_ids()


# -- The run-sync permission -------------------------------------------------------------------------------------------


def test_without_the_run_sync_permission_a_mapping_editor_can_neither_start_nor_cancel_syncs_and_with_it_can(
    client, django_user_model, django_capture_on_commit_callbacks, sandbox_connections
):
    user = user_with(
        django_user_model, "mappings.view_tablemapping", "mappings.change_tablemapping", "jobs.view_syncjob"
    )
    client.force_login(user)
    queued = SyncJob.objects.create(table_mapping=TableMapping.objects.get(name="CURRENCY"), direction="to_dataverse")
    review_url = reverse("admin:mappings_tablemapping_full_sync_review")
    sync_all_url = reverse("admin:mappings_tablemapping_sync_all")
    cancel = {"action": "cancel_jobs", "_selected_action": [queued.pk]}

    assert not SYNC_ACTIONS & action_choices(client)
    assert client.get(review_url).status_code == 200  # to read, not to run: see the review's own tests
    assert client.post(review_url, {"mapping": ["CURRENCY"]}).status_code == 403
    assert client.post(review_url, {"mapping": ["CURRENCY"], "preview": "1"}).status_code == 403
    assert client.post(sync_all_url).status_code == 403
    client.post(reverse("admin:jobs_syncjob_changelist"), cancel)
    queued.refresh_from_db()
    assert (queued.status, queued.cancel_requested) == (JobStatus.QUEUED, False)
    assert list(SyncJob.objects.all()) == [queued]

    grant(user, "jobs.run_sync")

    assert action_choices(client) >= SYNC_ACTIONS
    assert client.get(review_url).status_code == 200
    # The action asks first (what stays written), and cancels once confirmed there.
    asked = client.post(reverse("admin:jobs_syncjob_changelist"), cancel).content.decode()
    assert "Cancel 1 job(s): are you sure?" in asked and "never starts" in asked
    queued.refresh_from_db()
    assert (queued.status, queued.cancel_requested) == (JobStatus.QUEUED, False)
    response = client.post(reverse("admin:jobs_syncjob_changelist"), {**cancel, "confirm": "yes"}, follow=True)
    assert "Asked 1 job(s) to stop." in response.content.decode()
    queued.refresh_from_db()
    assert (queued.status, queued.cancel_requested) == (JobStatus.CANCELLED, True)
    with django_capture_on_commit_callbacks(execute=True):  # (a run still queued would have refused the preview)
        assert confirm_after_preview(client, sync_all_url, {}).status_code == 302
    started = SyncJob.objects.exclude(pk=queued.pk).filter(dry_run=False)
    assert started.exists() and {job.requested_by for job in started} == {user}


# -- Full synchronization review ---------------------------------------------------------------------------------------


def review_rows(html):
    """Mapping name -> the row's cells by column heading, and whether its checkbox is there and checked."""
    table = html.split('<table id="full-sync-review">', 1)[1].split("</table>", 1)[0]
    headings = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th>(.*?)</th>", table, re.S)]
    body = table.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = {}
    for name, row in re.findall(r'<tr data-mapping="([^"]+)">(.*?)</tr>', body, re.S):
        cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        checkbox = re.search(r'<input type="checkbox"[^>]*>', row)
        rows[name] = {
            **dict(zip(headings, cells, strict=True)),
            "html": row,
            "checkbox": None if checkbox is None else bool(re.search(r"\bchecked\b", checkbox.group(0))),
        }
    return rows


def recommendation(row):
    return (row["Business Central records"], row["Dataverse records"], row["Coupled"], row["Recommendation"])


def test_the_full_sync_review_recommends_per_mapping_from_the_counts_the_couplings_and_the_match_fields(
    admin_client, sandbox_connections
):
    bc, dataverse = sandbox_connections
    # CUSTOMER: no account passes the Dataverse filter. VENDOR: nothing passes either filter. The rest as seeded:
    # CURRENCY and SALESPEOPLE have match fields, CONTACT has none.
    TableMapping.objects.filter(name="CUSTOMER").update(integration_table_filter="statecode eq 1")
    TableMapping.objects.filter(name="VENDOR").update(
        table_filter="displayName eq 'No such vendor'", integration_table_filter="statecode eq 1"
    )

    response = admin_client.get(reverse("admin:mappings_tablemapping_full_sync_review"))

    assert response.status_code == 200
    html = response.content.decode()
    rows = review_rows(html)
    assert list(rows) == [mapping.name for mapping in mappings_in_dependency_order()]
    unblocked = count(bc, "customers", "blocked eq ' '")
    assert unblocked > 0
    assert recommendation(rows["CUSTOMER"]) == (str(unblocked), "0", "0", FULL_SYNC)
    assert rows["CUSTOMER"]["checkbox"] is True
    assert "Only Business Central has records" in rows["CUSTOMER"]["Why"]
    assert "Dataverse accounts" in rows["CUSTOMER"]["Why"]
    assert recommendation(rows["VENDOR"]) == ("0", "0", "0", NOTHING)
    assert rows["VENDOR"]["checkbox"] is False
    # Records on both sides, none coupled, but match fields: the synchronization couples the same ones by them.
    currencies = (str(count(bc, "currencies")), str(count(dataverse, "transactioncurrencies")))
    assert recommendation(rows["CURRENCY"]) == (*currencies, "0", FULL_SYNC)
    assert rows["CURRENCY"]["checkbox"] is True
    assert "(code = isocurrencycode)" in rows["CURRENCY"]["Why"]
    assert "Business Central currencies" in rows["CURRENCY"]["Why"]
    # Without match fields, both sides' records would become duplicates of each other: couple them first.
    assert rows["CONTACT"]["Recommendation"] == COUPLE_FIRST
    assert rows["CONTACT"]["checkbox"] is False
    assert "CONTACT has no match fields" in rows["CONTACT"]["Why"]
    match_url = reverse(
        "admin:mappings_tablemapping_match_coupling", args=[TableMapping.objects.get(name="CONTACT").pk]
    )
    assert f'href="{match_url}"' in rows["CONTACT"]["html"]
    assert "company" not in " ".join(row["Why"] for row in rows.values())


def test_the_full_sync_review_has_nothing_to_synchronize_once_every_record_is_coupled(
    admin_client, sandbox_connections, customer
):
    # Both sides have customers; a full synchronization couples every one of them (creating each one's partner).
    sync_command("CUSTOMER", "--kind", "full")
    coupled = Coupling.objects.filter(table_mapping=customer, pending=False).count()
    bc, dataverse = sandbox_connections
    counts = (
        count(bc, "customers", customer.table_filter),
        count(dataverse, "accounts", customer.integration_table_filter),
    )
    assert coupled > 0 and counts == (coupled, coupled)

    rows = review_rows(admin_client.get(reverse("admin:mappings_tablemapping_full_sync_review")).content.decode())

    assert recommendation(rows["CUSTOMER"]) == (str(coupled), str(coupled), str(coupled), NOTHING)
    assert rows["CUSTOMER"]["checkbox"] is False
    assert "Every record on both sides is coupled" in rows["CUSTOMER"]["Why"]
    assert "modified-records runs keep them in step" in rows["CUSTOMER"]["Why"]
    # A coupling still being created (pending) is not a coupled record.
    Coupling.objects.filter(pk=Coupling.objects.filter(table_mapping=customer).first().pk).update(pending=True)
    rows = review_rows(admin_client.get(reverse("admin:mappings_tablemapping_full_sync_review")).content.decode())
    assert rows["CUSTOMER"]["Coupled"] == str(coupled - 1)
    assert rows["CUSTOMER"]["Recommendation"] == COUPLE_FIRST


def test_running_the_reviewed_mappings_queues_full_synchronizations_in_dependency_order(
    admin_client, admin_user, django_capture_on_commit_callbacks, sandbox_connections
):
    chosen = ["CONTACT", "CUSTOMER", "CURRENCY"]  # not in dependency order

    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_after_preview(
            admin_client, reverse("admin:mappings_tablemapping_full_sync_review"), {"mapping": chosen}, follow=True
        )

    assert response.redirect_chain[-1][0] == reverse("admin:jobs_syncjob_changelist")
    assert "Full synchronization queued: 5 sync job(s), in dependency order." in response.content.decode()
    jobs = list(SyncJob.objects.filter(dry_run=False).order_by("pk"))
    in_order = [mapping.name for mapping in mappings_in_dependency_order() if mapping.name in chosen]
    assert list(dict.fromkeys(name for name, _ in runs(jobs))) == in_order
    assert runs(jobs) == [
        ("CURRENCY", "to_dataverse"),
        ("CUSTOMER", "to_dataverse"),
        ("CUSTOMER", "from_dataverse"),
        ("CONTACT", "to_dataverse"),
        ("CONTACT", "from_dataverse"),
    ]
    assert {(job.kind, job.dry_run, job.requested_by, job.status) for job in jobs} == {
        (JobKind.FULL, False, admin_user, JobStatus.QUEUED)
    }
    # One RQ job runs them in turn, so a mapping never starts before the ones it depends on have finished.
    assert len({job.rq_job_id for job in jobs}) == 1 and jobs[0].rq_job_id in queued_rq_job_ids()


def test_previewing_the_reviewed_mappings_queues_dry_run_full_synchronizations_that_write_nothing(
    admin_client, admin_user, sandbox_connections, customer, django_capture_on_commit_callbacks, rq_worker
):
    before = sandbox_sizes(sandbox_connections)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:mappings_tablemapping_full_sync_review"),
            {"mapping": ["CUSTOMER", "CURRENCY"], "preview": "Preview"},
            follow=True,
        )
    rq_worker()

    assert response.redirect_chain[-1][0] == reverse("admin:jobs_syncjob_changelist")
    assert "Preview of a full synchronization queued: 3 sync job(s), in dependency order." in response.content.decode()
    jobs = list(SyncJob.objects.order_by("pk"))
    assert runs(jobs) == [
        ("CURRENCY", "to_dataverse"),
        ("CUSTOMER", "to_dataverse"),
        ("CUSTOMER", "from_dataverse"),
    ]
    assert {(job.kind, job.dry_run, job.requested_by, job.status) for job in jobs} == {
        (JobKind.FULL, True, admin_user, JobStatus.SUCCEEDED)
    }, [job.message for job in jobs]
    assert jobs[1].preview["counts"]["insert"] > 0
    assert sandbox_sizes(sandbox_connections) == before
    assert not Coupling.objects.exists()


def test_running_the_review_with_nothing_checked_says_so_and_queues_nothing(admin_client):
    response = admin_client.post(reverse("admin:mappings_tablemapping_full_sync_review"), {}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:mappings_tablemapping_full_sync_review")
    assert "Check the mappings to synchronize." in response.content.decode()
    assert not SyncJob.objects.exists()


def test_without_the_run_sync_permission_the_review_is_read_only_and_refuses_to_run_or_preview(
    client, django_user_model, sandbox_connections
):
    user = user_with(django_user_model, "mappings.view_tablemapping")
    client.force_login(user)
    url = reverse("admin:mappings_tablemapping_full_sync_review")

    response = client.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    rows = review_rows(html)
    assert list(rows) == [mapping.name for mapping in mappings_in_dependency_order()]
    assert rows["CURRENCY"]["Recommendation"] == FULL_SYNC
    assert rows["CONTACT"]["Recommendation"] == COUPLE_FIRST
    assert {row["checkbox"] for row in rows.values()} == {None}
    assert 'name="mapping"' not in html and 'name="preview"' not in html
    assert "Run full synchronization of the checked mappings" not in html
    assert "needs the permission to run synchronizations" in html
    for data in ({"mapping": ["CURRENCY"]}, {"mapping": ["CURRENCY"], "preview": "1"}):
        refused = client.post(url, data)
        assert refused.status_code == 403
        assert "Permission denied" in refused.content.decode()
    assert not SyncJob.objects.exists()

    grant(user, "jobs.run_sync")

    html = client.get(url).content.decode()
    rows = review_rows(html)
    assert rows["CURRENCY"]["checkbox"] is True and rows["CONTACT"]["checkbox"] is False
    assert "Run full synchronization of the checked mappings" in html and 'name="preview"' in html
    assert "needs the permission to run synchronizations" not in html


def test_a_user_who_may_not_see_table_mappings_may_not_see_the_review(client, django_user_model):
    client.force_login(user_with(django_user_model, "jobs.view_syncjob"))

    assert client.get(reverse("admin:mappings_tablemapping_full_sync_review")).status_code == 403


def test_the_full_sync_review_without_connections_says_why_it_cannot_count(admin_client):
    response = admin_client.get(reverse("admin:mappings_tablemapping_full_sync_review"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Could not count the records: No enabled Business Central connection: add one under Connections." in html
    assert review_rows(html) == {}


# -- Synchronize all ---------------------------------------------------------------------------------------------------


def test_synchronize_all_refuses_a_get_and_queues_modified_records_of_every_mapping_with_fields_in_dependency_order(
    admin_client, admin_user, django_capture_on_commit_callbacks, sandbox_connections
):
    TableMapping.objects.get(name="VENDOR").field_mappings.update(enabled=False)  # nothing to synchronize
    url = reverse("admin:mappings_tablemapping_sync_all")

    assert admin_client.get(url).status_code == 403
    assert not SyncJob.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = confirm_after_preview(admin_client, url, {}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:jobs_syncjob_changelist")
    page = response.content.decode()
    assert "Queued for all mappings, in dependency order: " in page
    jobs = list(SyncJob.objects.filter(dry_run=False).order_by("pk"))
    assert len(jobs) == 6
    for job in jobs:  # the message links to every job it queued
        assert (
            f'<a href="{reverse("admin:jobs_syncjob_change", args=[job.pk])}">#{job.pk} {job.table_mapping.name}'
            in page
        )
    assert runs(jobs) == [
        ("CURRENCY", "to_dataverse"),
        ("SALESPEOPLE", "from_dataverse"),
        ("CUSTOMER", "to_dataverse"),
        ("CUSTOMER", "from_dataverse"),
        ("CONTACT", "to_dataverse"),
        ("CONTACT", "from_dataverse"),
    ]
    assert {(job.kind, job.dry_run, job.requested_by) for job in jobs} == {(JobKind.MODIFIED, False, admin_user)}
    assert len({job.rq_job_id for job in jobs}) == 1 and jobs[0].rq_job_id in queued_rq_job_ids()


def test_synchronize_all_as_a_preview_runs_every_mapping_and_writes_nothing(
    admin_client, sandbox_connections, customer, django_capture_on_commit_callbacks, rq_worker
):
    before = sandbox_sizes(sandbox_connections)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:mappings_tablemapping_sync_all"), {"preview": "1"})
    rq_worker()

    jobs = list(SyncJob.objects.order_by("pk"))
    assert [name for name, _ in runs(jobs)] == [
        "CURRENCY",
        "SALESPEOPLE",
        "CUSTOMER",
        "CUSTOMER",
        "VENDOR",
        "VENDOR",
        "CONTACT",
        "CONTACT",
    ]
    assert all(job.dry_run for job in jobs)
    assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}, [job.message for job in jobs]
    customer_to_dataverse = jobs[2]
    assert customer_to_dataverse.preview["counts"]["insert"] > 0
    assert sandbox_sizes(sandbox_connections) == before
    assert not Coupling.objects.exists()


# -- The job page ------------------------------------------------------------------------------------------------------


def counts_row(job):
    values = [job.inserted, job.modified, job.deleted, job.unchanged, job.skipped, job.failed]
    return "".join(f"<td>{value}</td>" for value in values) + (
        f'<td class="syncjob-waiting">{job.waiting}</td><td>{job.coupled}</td><td>{job.uncoupled}</td>'
    )


def test_the_job_page_polls_its_progress_while_queued_and_shows_the_counts_once_done(
    admin_client,
    client,
    django_user_model,
    sandbox_connections,
    customer,
    django_capture_on_commit_callbacks,
    rq_worker,
):
    with django_capture_on_commit_callbacks(execute=True):
        (job,) = sync_enqueue(mapping=customer, direction="to_dataverse")
    page_url = reverse("admin:jobs_syncjob_change", args=[job.pk])
    progress_url = reverse("admin:jobs_syncjob_progress", args=[job.pk])

    html = admin_client.get(page_url).content.decode()
    assert f'class="syncjob-progress" data-poll-url="{progress_url}"' in html
    assert "<strong>Queued</strong>" in html

    rq_worker()

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.inserted > 0
    html = admin_client.get(page_url).content.decode()
    assert "data-poll-url" not in html  # finished: nothing left to poll
    assert "<strong>Succeeded</strong>" in html
    assert counts_row(job) in html
    assert f"{job.progress_done} records read" in html

    viewer = user_with(django_user_model, "jobs.view_syncjob")
    client.force_login(viewer)
    fragment = client.get(progress_url)
    assert fragment.status_code == 200
    assert "<strong>Succeeded</strong>" in fragment.content.decode()
    assert counts_row(job) in fragment.content.decode()

    viewer.user_permissions.clear()
    grant(viewer, "mappings.view_tablemapping")
    assert client.get(progress_url).status_code == 403


def test_while_a_job_runs_its_progress_fragment_says_so_and_asks_to_be_polled(
    admin_client, sandbox_connections, customer
):
    (job,) = sync_jobs_create(mapping=customer, direction="to_dataverse")
    progress_url = reverse("admin:jobs_syncjob_progress", args=[job.pk])
    fragments = []

    # Fetched between pages of the run (pages of 5 records), as the job page's script does.
    sync_jobs_run(job_ids=[job.pk], on_progress=lambda _: fragments.append(admin_client.get(progress_url)))

    assert len(fragments) > 1
    read = []
    for fragment in fragments:
        html = fragment.content.decode()
        assert fragment.status_code == 200
        assert f'data-poll-url="{progress_url}"' in html and "<strong>Running</strong>" in html
        read.append(int(re.search(r"(\d+) records read", html).group(1)))
    assert read == sorted(read) and read[-1] > read[0]
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert "data-poll-url" not in admin_client.get(progress_url).content.decode()


def run_to_dataverse(mapping):
    (job,) = sync_jobs_create(mapping=mapping, direction="to_dataverse")
    sync_jobs_run(job_ids=[job.pk])
    job.refresh_from_db()
    return job


def test_the_errors_link_of_a_job_lists_only_that_jobs_errors(admin_client, sandbox_connections):
    """Customers whose salesperson is not coupled fail to synchronize, in this run and the next."""
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.sync_only_coupled = False
    mapping.save()
    first = run_to_dataverse(mapping)
    second = run_to_dataverse(mapping)
    assert first.failed > 0 and second.failed > 0

    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[second.pk])).content.decode()
    errors_url = reverse("admin:jobs_syncerror_changelist") + f"?job={second.pk}&state=all"
    assert f'href="{errors_url.replace("&", "&amp;")}">{second.failed} errors of this job</a>' in page
    # The first run's errors were superseded by the second's (the same records failed again): one open error each.
    assert f"{second.failed} still open" in page

    response = admin_client.get(errors_url)

    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert len(shown) == second.failed and {error.job_id for error in shown} == {second.pk}
    html = response.content.decode()
    assert reverse("admin:jobs_syncjob_change", args=[second.pk]) in html
    assert reverse("admin:jobs_syncjob_change", args=[first.pk]) not in html


# -- manage.py sync ----------------------------------------------------------------------------------------------------


def sync_command(*args):
    out, err = StringIO(), StringIO()
    call_command("sync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_sync_command_runs_one_mapping_and_prints_each_job_with_its_status_and_counts(sandbox_connections):
    out, _ = sync_command("currency", "--kind", "modified")  # names are not case-sensitive

    (job,) = SyncJob.objects.all()
    assert (job.table_mapping.name, job.kind, job.status) == ("CURRENCY", JobKind.MODIFIED, JobStatus.SUCCEEDED)
    assert job.coupled > 0 and Coupling.objects.filter(table_mapping__name="CURRENCY").count() == job.coupled
    status_line, counts_line = out.splitlines()[:2]
    assert status_line == f"#{job.pk} CURRENCY to_dataverse: Succeeded"
    assert f"coupled {job.coupled}" in counts_line
    assert f"; {job.http_requests} HTTP requests." in counts_line


def test_sync_command_preview_prints_the_field_differences_and_writes_nothing(sandbox_connections, customer):
    bc, _ = sandbox_connections
    before = sandbox_sizes(sandbox_connections)
    with open_client(bc) as client:
        names = [
            row["displayName"] for page in client.read_pages("customers", filter="blocked eq ' '") for row in page.rows
        ]

    out, _ = sync_command("CUSTOMER", "--direction", "to_dataverse", "--preview")

    job = SyncJob.objects.get(table_mapping__name="CUSTOMER")  # after previews of the mappings it depends on
    assert job.dry_run and job.status == JobStatus.SUCCEEDED
    assert f"#{job.pk} CUSTOMER to_dataverse: Succeeded" in out.splitlines()
    for name in names:
        assert f"    insert {name}: name None -> {name!r}" in out
    assert sandbox_sizes(sandbox_connections) == before
    assert not Coupling.objects.exists()


def test_sync_command_runs_the_mappings_a_mapping_depends_on_first_as_the_admin_action_does(
    sandbox_connections, customer
):
    out, _ = sync_command("CUSTOMER", "CURRENCY", "--direction", "to_dataverse")

    # CURRENCY was named, so it runs once, with the named options; SALESPEOPLE runs as a dependency, as it is set.
    assert runs(SyncJob.objects.order_by("pk")) == [
        ("CURRENCY", "to_dataverse"),
        ("SALESPEOPLE", "from_dataverse"),
        ("CUSTOMER", "to_dataverse"),
    ]
    assert {job.status for job in SyncJob.objects.all()} == {JobStatus.SUCCEEDED}
    customer = SyncJob.objects.get(table_mapping__name="CUSTOMER")
    assert customer.failed == 0 and customer.inserted > 0  # its currencies and salespeople were coupled first


def test_sync_command_refuses_an_unknown_mapping_and_names_the_known_ones():
    with pytest.raises(CommandError) as refused:
        sync_command("CUSTOMER", "nope")

    assert str(refused.value) == "Unknown mapping(s): nope. Known: CONTACT, CURRENCY, CUSTOMER, SALESPEOPLE, VENDOR."
    assert not SyncJob.objects.exists()


def test_sync_command_synchronizes_only_the_selected_record(sandbox_connections, customer):
    bc, dataverse = sandbox_connections
    with open_client(bc) as client:
        chosen = next(client.read_pages("customers", filter="blocked eq ' '")).rows[0]
    accounts = count(dataverse, "accounts")

    _, err = sync_command("CUSTOMER", "--kind", "records", "--record", chosen["id"])
    assert "CUSTOMER is bidirectional: choose the direction to synchronize the records in." in err
    assert not SyncJob.objects.exists()

    out, _ = sync_command("CUSTOMER", "--kind", "records", "--direction", "to_dataverse", "--record", chosen["id"])

    (job,) = SyncJob.objects.all()
    assert (job.kind, job.record_ids, job.status, job.inserted) == (
        JobKind.RECORDS,
        [chosen["id"]],
        JobStatus.SUCCEEDED,
        1,
    )
    assert "inserted 1" in out
    assert count(dataverse, "accounts") == accounts + 1
    (coupling,) = Coupling.objects.all()
    assert str(coupling.bc_id) == chosen["id"]
    with open_client(dataverse) as client:
        account = client.read_by_ids("accounts", [coupling.dataverse_id])[coupling.dataverse_id]
    assert account["name"] == chosen["displayName"]


def test_sync_command_with_enqueue_queues_the_jobs_for_a_worker_instead_of_running_them(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = sync_command("CUSTOMER", "--enqueue")

    jobs = list(SyncJob.objects.order_by("pk"))
    assert runs(jobs) == [
        ("CURRENCY", "to_dataverse"),
        ("SALESPEOPLE", "from_dataverse"),
        ("CUSTOMER", "to_dataverse"),
        ("CUSTOMER", "from_dataverse"),
    ]
    assert out.strip() == f"Queued sync jobs {', '.join(f'#{job.pk}' for job in jobs)}."
    assert {job.status for job in jobs} == {JobStatus.QUEUED}
    assert {job.rq_job_id for job in jobs} == queued_rq_job_ids()

    rq_worker()

    assert {job.status for job in SyncJob.objects.all()} == {JobStatus.SUCCEEDED}


# -- Removing old jobs -------------------------------------------------------------------------------------------------


def test_cleanup_removes_jobs_and_their_errors_finished_before_the_retention_period_and_keeps_the_others(settings):
    settings.SYNC_JOB_RETENTION_DAYS = 30
    mapping = TableMapping.objects.get(name="CUSTOMER")
    now = timezone.now()

    def job_with_an_error(*, days_ago, status, finished=True):
        at = now - timedelta(days=days_ago)
        job = SyncJob.objects.create(
            table_mapping=mapping, direction="to_dataverse", status=status, finished_at=at if finished else None
        )
        SyncJob.objects.filter(pk=job.pk).update(queued_at=at, started_at=at)
        error = SyncError.objects.create(
            job=job, table_mapping=mapping, direction="to_dataverse", error_class="validation", message="too long"
        )
        SyncError.objects.filter(pk=error.pk).update(created_at=at)
        return job

    job_with_an_error(days_ago=31, status=JobStatus.PARTLY_FAILED)
    job_with_an_error(days_ago=45, status=JobStatus.FAILED)
    recent = job_with_an_error(days_ago=29, status=JobStatus.PARTLY_FAILED)
    running = job_with_an_error(days_ago=1, status=JobStatus.RUNNING, finished=False)
    # A job whose worker died stays "running" until its mapping runs again: its old errors stay with it.
    abandoned = job_with_an_error(days_ago=40, status=JobStatus.RUNNING, finished=False)
    queued = SyncJob.objects.create(table_mapping=mapping, direction="to_dataverse")
    SyncJob.objects.filter(pk=queued.pk).update(queued_at=now - timedelta(days=40))

    assert sync_jobs_delete_old() == 2

    assert set(SyncJob.objects.values_list("pk", flat=True)) == {recent.pk, running.pk, abandoned.pk, queued.pk}
    assert set(SyncError.objects.values_list("job_id", flat=True)) == {recent.pk, running.pk, abandoned.pk}
