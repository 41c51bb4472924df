"""Every action that writes in bulk first shows what it will do, with the preview's counts, and acts only when the
page's own form posts it again confirmed (Django's delete_selected pattern): nothing is queued or written before.
"""

import re

import pytest
from django.test import Client
from django.urls import reverse

from coupling.models import Coupling
from coupling.services import coupling_create
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.services import sync_jobs_run
from mappings.models import TableMapping

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"])]

MAPPINGS = "admin:mappings_tablemapping_changelist"


def hidden_fields(html: str, form_class: str) -> list[tuple[str, str]]:
    form = html.split(f'class="{form_class}"')[1].split("</form>")[0]
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form)


def as_data(fields):
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return data


def table(html: str) -> list[list[str]]:
    body = html.split('class="bulk-rows"')[1].split("</table>")[0].split("<tbody>")[1]
    return [re.findall(r"<td>(.*?)</td>", row) for row in body.split("</tr>") if "<td>" in row]


def run_queued():
    sync_jobs_run(job_ids=list(SyncJob.objects.filter(status=JobStatus.QUEUED).values_list("pk", flat=True)))


def test_synchronize_modified_records_asks_first_with_the_previews_counts_then_does_what_they_said(
    admin_client, sandbox_connections, django_capture_on_commit_callbacks
):
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()
    action = {"action": "synchronize_modified_records", "_selected_action": [customer.pk]}

    asked = admin_client.post(reverse(MAPPINGS), action)

    html = asked.content.decode()
    assert asked.status_code == 200 and "are you sure?" in html
    assert not SyncJob.objects.exists()  # one click created 394 records: now it creates nothing
    assert [row[:2] for row in table(html)] == [
        ["CURRENCY (dependency, first)", "To Dataverse"],
        ["SALESPEOPLE (dependency, first)", "From Dataverse"],
        ["CUSTOMER", "To Dataverse"],
        ["CUSTOMER", "From Dataverse"],
    ]
    assert "no preview yet" in html and "csrfmiddlewaretoken" in html

    # "Preview first": the page's second form posts the preview action on the same selection.
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse(MAPPINGS), as_data(hidden_fields(html, "bulk-preview")))
    assert SyncJob.objects.filter(dry_run=True).count() == 4 and not SyncJob.objects.filter(dry_run=False).exists()
    run_queued()
    preview = SyncJob.objects.get(dry_run=True, table_mapping=customer, direction="to_dataverse")

    html = admin_client.post(reverse(MAPPINGS), action).content.decode()
    customer_row = table(html)[2]
    assert customer_row[2] == str(preview.preview["counts"]["insert"]) and customer_row[4] == "0"
    assert f"job #{preview.pk}" in customer_row[-1]

    confirm = as_data(hidden_fields(html, "bulk-confirm"))
    assert confirm["confirm"] == ["yes"]
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse(MAPPINGS), confirm)
    run_queued()
    run = SyncJob.objects.get(dry_run=False, table_mapping=customer, direction="to_dataverse")
    assert (run.inserted, run.failed) == (preview.preview["counts"]["insert"], 0)
    assert Coupling.objects.filter(table_mapping=customer, last_job_to_dataverse=run.pk).count() == run.inserted


def test_synchronize_all_and_full_synchronization_from_the_review_ask_first(admin_client):
    asked = admin_client.post(reverse("admin:mappings_tablemapping_sync_all"))
    assert asked.status_code == 200 and "Synchronize all: are you sure?" in asked.content.decode()
    asked = admin_client.post(reverse("admin:mappings_tablemapping_full_sync_review"), {"mapping": ["CURRENCY"]})
    html = asked.content.decode()
    assert "Full synchronization: are you sure?" in html
    assert ("mapping", "CURRENCY") in hidden_fields(html, "bulk-confirm")
    assert not SyncJob.objects.exists()


def test_uncouple_many_shows_how_many_and_removes_them_only_when_confirmed(
    admin_client, sandbox_connections, django_capture_on_commit_callbacks
):
    from connectors.clients import open_client

    bc, dataverse = sandbox_connections
    customer = TableMapping.objects.get(name="CUSTOMER")
    with open_client(bc) as client:
        bc_ids = [row["id"] for row in next(iter(client.read_pages("customers"))).rows[:3]]
    with open_client(dataverse) as client:
        dv_ids = [row["accountid"] for row in next(iter(client.read_pages("accounts"))).rows[:3]]
    for bc_id, dv_id in zip(bc_ids, dv_ids, strict=True):
        coupling_create(mapping=customer, bc_id=bc_id, dataverse_id=dv_id)
    action = {"action": "uncouple_all", "_selected_action": [customer.pk]}

    html = admin_client.post(reverse(MAPPINGS), action).content.decode()

    assert "Remove 3 coupling(s)" in html and table(html) == [["CUSTOMER", "3"]]
    assert Coupling.objects.filter(table_mapping=customer).count() == 3 and not SyncJob.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse(MAPPINGS), as_data(hidden_fields(html, "bulk-confirm")))
    run_queued()
    assert not Coupling.objects.filter(table_mapping=customer).exists()


def test_retry_shows_the_records_it_will_synchronize_again_and_queues_only_when_confirmed(admin_client, customer):
    import uuid

    job = SyncJob.objects.create(table_mapping=customer, direction="to_dataverse")
    errors = SyncError.objects.bulk_create(
        [
            SyncError(
                job=job,
                table_mapping=customer,
                direction="to_dataverse",
                bc_id=uuid.uuid4(),
                error_class="validation",
                message="x",
            )
            for _ in range(4)
        ]
    )
    url = reverse("admin:jobs_syncerror_changelist")
    action = {"action": "retry_errors", "_selected_action": [e.pk for e in errors]}

    html = admin_client.post(url, action).content.decode()

    assert "Synchronize 4 record(s) again" in html and table(html) == [["CUSTOMER", "To Dataverse", "4"]]
    assert not SyncJob.objects.filter(kind=JobKind.RECORDS).exists()
    admin_client.post(url, as_data(hidden_fields(html, "bulk-confirm")))
    (retry,) = SyncJob.objects.filter(kind=JobKind.RECORDS)
    assert sorted(retry.record_ids) == sorted(str(e.bc_id) for e in errors)


def test_match_based_coupling_previews_its_pairs_and_couples_that_many_when_confirmed(
    admin_client, sandbox_connections
):
    salespeople = TableMapping.objects.get(name="SALESPEOPLE")
    action = {"action": "run_match_based_coupling", "_selected_action": [salespeople.pk]}

    html = admin_client.post(reverse(MAPPINGS), action).content.decode()

    ((name, pairs, *_),) = table(html)
    assert name == "SALESPEOPLE" and int(pairs) > 0
    assert not Coupling.objects.exists() and not SyncJob.objects.exists()
    admin_client.post(reverse(MAPPINGS), as_data(hidden_fields(html, "bulk-confirm")))
    run_queued()
    assert Coupling.objects.filter(table_mapping=salespeople).count() == int(pairs)


def test_the_confirmation_keeps_csrf_and_the_actions_permission(client, django_user_model, customer):
    """The confirmed post is an ordinary action post: CSRF checked, and refused to a user without run_sync."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("editor", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_tablemapping", "change_tablemapping"]))
    client.force_login(user)
    confirmed = {"action": "synchronize_modified_records", "_selected_action": [customer.pk], "confirm": "yes"}
    client.post(reverse(MAPPINGS), confirmed)
    assert not SyncJob.objects.exists()

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    assert csrf_client.post(reverse(MAPPINGS), confirmed).status_code == 403  # no token: refused
    assert not SyncJob.objects.exists()


def test_the_match_page_previews_with_the_posted_criteria_and_saves_them_only_when_confirmed(
    admin_client, sandbox_connections
):
    salespeople = TableMapping.objects.get(name="SALESPEOPLE")
    criteria = list(
        salespeople.field_mappings.filter(enabled=True)
        .exclude(bc_field="")
        .exclude(dataverse_field="")
        .order_by("position", "id")
    )
    salespeople.field_mappings.update(use_for_matching=False)
    by_email = next(i for i, fm in enumerate(criteria) if fm.bc_field == "email")
    data = {"form-TOTAL_FORMS": len(criteria), "form-INITIAL_FORMS": len(criteria)}
    for index, field_mapping in enumerate(criteria):
        data |= {f"form-{index}-id": field_mapping.pk, f"form-{index}-match_priority": 1}
    data[f"form-{by_email}-use_for_matching"] = "on"
    url = reverse("admin:mappings_tablemapping_match_coupling", args=[salespeople.pk])

    html = admin_client.post(url, data).content.decode()

    ((name, pairs, *_),) = table(html)
    assert name == "SALESPEOPLE" and int(pairs) > 0  # matched by e-mail, as posted
    assert not salespeople.field_mappings.filter(use_for_matching=True).exists()  # not saved yet
    assert not SyncJob.objects.exists()
    admin_client.post(url, as_data(hidden_fields(html, "bulk-confirm")))
    assert list(salespeople.field_mappings.filter(use_for_matching=True)) == [criteria[by_email]]
    run_queued()
    assert Coupling.objects.filter(table_mapping=salespeople).count() == int(pairs)


def test_retry_by_class_asks_first_keeping_the_lists_filters(admin_client, customer):
    import uuid

    job = SyncJob.objects.create(table_mapping=customer, direction="to_dataverse")
    for error_class in ("conflict", "conflict", "validation"):
        SyncError.objects.create(
            job=job,
            table_mapping=customer,
            direction="to_dataverse",
            bc_id=uuid.uuid4(),
            error_class=error_class,
            message="x",
        )
    url = reverse("admin:jobs_syncerror_retry_class") + f"?table_mapping={customer.pk}"

    html = admin_client.post(url, {"error_class": "conflict"}).content.decode()

    assert table(html) == [["CUSTOMER", "To Dataverse", "2"]] and not SyncJob.objects.filter(kind="records").exists()
    assert f'action="{url}"' in html  # the confirmed post keeps the list's filters
    admin_client.post(url, as_data(hidden_fields(html, "bulk-confirm")))
    (retry,) = SyncJob.objects.filter(kind=JobKind.RECORDS)
    assert len(retry.record_ids) == 2
