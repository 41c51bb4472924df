"""Every action that writes in bulk first shows what it will do, with the preview's counts, and acts only when the
page's own form posts it again confirmed (Django's delete_selected pattern): nothing is queued or written before.
"""

import re
from html import unescape

import pytest
from django.db.models import F
from django.test import Client
from django.urls import reverse

from coupling.models import Coupling
from coupling.services import coupling_create
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncError, SyncJob
from jobs.services import sync_jobs_run
from mappings.models import TableMapping
from tests.previewing import run_previews

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


def poll_url(html: str) -> str:
    return unescape(re.search(r'class="confirm-previews" data-poll-url="([^"]+)"', html).group(1))


def confirm_button(html: str) -> str:
    """The Confirm button the previews' fragment holds ("" when it shows none)."""
    found = re.search(r'<input type="submit" form="bulk-confirm-form"[^>]*>', html)
    return found.group(0) if found else ""


# A preview's count key -> the run's counter it foretells (a failure and a conflict are both a failed record).
FORETOLD = {"insert": "inserted", "update": "modified", "unchanged": "unchanged", "skip": "skipped"}


def test_synchronize_modified_records_previews_its_own_jobs_and_confirm_runs_what_they_counted(
    admin_client, sandbox_connections, django_capture_on_commit_callbacks
):
    """The page that asks starts the run's own jobs as a preview, shows them as they run, and offers Confirm only when
    all have finished; the run then does what their counts said, in the jobs' counters and in the other system."""
    from tests.jobs.test_preview_chain import all_rows

    _, dataverse = sandbox_connections
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()
    accounts_before = len(all_rows(dataverse, "accounts"))
    action = {"action": "synchronize_modified_records", "_selected_action": [customer.pk]}

    with django_capture_on_commit_callbacks(execute=True):
        asked = admin_client.post(reverse(MAPPINGS), action)

    html = asked.content.decode()
    assert asked.status_code == 200 and "are you sure?" in html
    assert not SyncJob.objects.filter(dry_run=False).exists()  # one click created 394 records: now it creates nothing
    previews = list(SyncJob.objects.filter(dry_run=True).order_by("pk"))
    assert [row[:2] for row in table(html)] == [
        ["CURRENCY (dependency, first)", "To Dataverse"],
        ["SALESPEOPLE (dependency, first)", "From Dataverse"],
        ["CUSTOMER", "To Dataverse"],
        ["CUSTOMER", "From Dataverse"],
    ]
    assert [row[-1] for row in table(html)] == [f"job #{p.pk}: queued" for p in previews]
    assert "disabled" in confirm_button(html) and "csrfmiddlewaretoken" in html
    # Confirmed before the previews finished (a forged or hasty post): refused, nothing runs.
    refused = admin_client.post(reverse(MAPPINGS), as_data(hidden_fields(html, "bulk-confirm"))).content.decode()
    assert "Not run: The preview is not finished yet" in refused
    assert not SyncJob.objects.filter(dry_run=False).exists()
    SyncJob.objects.filter(dry_run=True, status=JobStatus.QUEUED).exclude(pk__in=[p.pk for p in previews]).delete()

    run_previews()
    fragment = admin_client.get(poll_url(html)).content.decode()  # what the page shows once the previews ended
    previews = [SyncJob.objects.get(pk=p.pk) for p in previews]
    assert "data-poll-url" not in fragment and "disabled" not in confirm_button(fragment)
    shown = table(fragment)
    for preview, row in zip(previews, shown, strict=True):
        counts = preview.preview["counts"]
        assert row[2:7] == [
            str(counts.get("insert", 0)),
            str(counts.get("update", 0)),
            str(counts.get("fail", 0) + counts.get("conflicts", 0)),
            str(counts.get("unchanged", 0)),
            str(counts.get("skip", 0)),
        ]
        assert row[7] == str(preview.preview.get("coupled", 0))
    assert shown[2][2] != "0"  # CUSTOMER would insert

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse(MAPPINGS), as_data(hidden_fields(html, "bulk-confirm")))
    runs = list(SyncJob.objects.filter(dry_run=False).order_by("pk"))
    assert [(r.table_mapping_id, r.direction, r.kind) for r in runs] == [
        (p.table_mapping_id, p.direction, p.kind) for p in previews
    ]
    run_queued()

    for preview, run in zip(previews, runs, strict=True):
        run.refresh_from_db()
        counts = preview.preview["counts"]
        said = {counter: counts.get(key, 0) for key, counter in FORETOLD.items()}
        said |= {"failed": counts.get("fail", 0) + counts.get("conflicts", 0), "coupled": preview.preview["coupled"]}
        assert said == {name: getattr(run, name) for name in said}, (run.table_mapping.name, run.direction)
    customer_run = runs[2]
    assert customer_run.inserted > 0 and customer_run.failed == 0
    # What the run said is what Dataverse holds: each account it inserted is there, coupled by this run.
    assert len(all_rows(dataverse, "accounts")) == accounts_before + customer_run.inserted
    assert Coupling.objects.filter(table_mapping=customer, last_job_to_dataverse=customer_run.pk).count() == (
        customer_run.inserted
    )


def test_a_preview_that_no_longer_holds_is_refused_and_previewed_again(
    admin_client, sandbox_connections, django_capture_on_commit_callbacks
):
    """Between the preview and Confirm a record changes in Business Central (or the preview grows old, or another run
    of the mapping starts): the run is refused with the reason, and the page previews again."""
    from datetime import timedelta

    from sandbox import testing as sandbox
    from tests.jobs.test_preview_chain import all_rows

    bc, _ = sandbox_connections
    currency = TableMapping.objects.get(name="CURRENCY")
    action = {"action": "synchronize_modified_records", "_selected_action": [currency.pk]}

    def ask():
        html = admin_client.post(reverse(MAPPINGS), action).content.decode()
        run_previews()
        return as_data(hidden_fields(html, "bulk-confirm"))

    confirm = ask()
    sandbox.edit_as_another_user("bc", "currencies", all_rows(bc, "currencies")[0]["id"], displayName="Changed")
    refused = admin_client.post(reverse(MAPPINGS), confirm).content.decode()
    assert "Not run: Business Central currencies changed after the preview of CURRENCY started." in refused
    assert not SyncJob.objects.filter(dry_run=False).exists()
    assert "disabled" in confirm_button(refused)  # the new preview is queued: Confirm waits for it

    confirm = ask()
    SyncJob.objects.filter(dry_run=True).update(started_at=F("started_at") - timedelta(minutes=16))
    refused = admin_client.post(reverse(MAPPINGS), confirm).content.decode()
    assert "Not run: The preview is more than 15 minutes old." in refused
    assert not SyncJob.objects.filter(dry_run=False).exists()

    confirm = ask()
    SyncJob.objects.create(table_mapping=currency, direction="to_dataverse")  # e.g. its schedule's run, queued
    refused = admin_client.post(reverse(MAPPINGS), confirm).content.decode()
    assert "ran (or is queued) after the preview started" in refused
    assert SyncJob.objects.filter(dry_run=False).count() == 1


def test_synchronize_all_and_full_synchronization_from_the_review_ask_first(admin_client, sandbox_connections):
    asked = admin_client.post(reverse("admin:mappings_tablemapping_sync_all"))
    assert asked.status_code == 200 and "Synchronize all: are you sure?" in asked.content.decode()
    asked = admin_client.post(reverse("admin:mappings_tablemapping_full_sync_review"), {"mapping": ["CURRENCY"]})
    html = asked.content.decode()
    assert "Full synchronization: are you sure?" in html
    assert ("mapping", "CURRENCY") in hidden_fields(html, "bulk-confirm")
    assert not SyncJob.objects.filter(dry_run=False).exists()
    (preview,) = SyncJob.objects.filter(dry_run=True, kind=JobKind.FULL)
    assert preview.table_mapping.name == "CURRENCY"


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
