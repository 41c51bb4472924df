"""Coupling pages driven through the admin (in-process, the sandbox over HTTP, jobs run by a burst worker)."""

import uuid

import pytest
from django.urls import reverse

from connectors.clients import open_client
from coupling.models import Coupling
from coupling.services import coupling_create
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncJob
from jobs.services import coupling_job_enqueue, sync_enqueue
from mappings.choices import Direction
from mappings.models import TableMapping
from sandbox import testing as sandbox_testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def rows(connection, entity_set, filter=None):
    with open_client(connection) as client:
        return [row for page in client.read_pages(entity_set, filter=filter) for row in page.rows]


@pytest.fixture
def customer():
    return TableMapping.objects.get(name="CUSTOMER")


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks, rq_worker):
    """Run `action` with on-commit callbacks executed (so its jobs are enqueued), then the queued jobs."""

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            result = action()
        rq_worker()
        return result

    return run


@pytest.fixture
def lookups_coupled(sandbox_connections, run_jobs):
    for name in ("CURRENCY", "SALESPEOPLE"):
        run_jobs(lambda name=name: coupling_job_enqueue(mapping=TableMapping.objects.get(name=name)))
    return sandbox_connections


def test_a_record_outside_the_table_filter_is_not_offered_and_coupling_it_is_refused_with_the_reason(
    admin_client, sandbox_connections, customer
):
    bc, dataverse = sandbox_connections
    blocked = rows(bc, "customers", "blocked ne ' '")[0]
    account = rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")[0]
    url = reverse("admin:mappings_tablemapping_couple", args=[customer.pk])

    page = admin_client.get(url, {"outside": "1", "bc_q": blocked["displayName"]}).content.decode()
    assert "Outside the mapping's filter: cannot be coupled" in page
    assert "blocked eq &#x27; &#x27;" in page  # the page names the filter

    response = admin_client.post(url, {"bc": blocked["id"], "dv": account["accountid"], "couple": "1"}, follow=True)
    assert "outside the CUSTOMER mapping&#x27;s Business Central filter" in response.content.decode()
    assert not Coupling.objects.filter(table_mapping=customer).exists()


def test_create_a_new_partner_in_dataverse_and_couple_it(admin_client, lookups_coupled, customer, run_jobs):
    bc, dataverse = lookups_coupled
    record = rows(bc, "customers", "blocked eq ' '")[0]
    url = reverse("admin:mappings_tablemapping_couple", args=[customer.pk])

    run_jobs(lambda: admin_client.post(url, {"bc": record["id"], "create_new": "1"}))

    coupling = Coupling.objects.get(table_mapping=customer, bc_id=record["id"])
    job = SyncJob.objects.get(table_mapping=customer, kind=JobKind.RECORDS)
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert not coupling.pending
    (account,) = rows(dataverse, "accounts", f"accountid eq {coupling.dataverse_id}")
    assert account["name"] == record["displayName"]


def test_restore_a_deleted_partner_and_delete_the_surviving_record(admin_client, lookups_coupled, customer, run_jobs):
    bc, dataverse = lookups_coupled
    first, second = rows(bc, "customers", "blocked eq ' '")[:2]
    pairs = []
    for record in (first, second):
        coupling = Coupling.objects.create(
            table_mapping=customer, bc_id=record["id"], dataverse_id=uuid.uuid4(), pending=True
        )
        pairs.append(coupling)
    run_jobs(
        lambda: sync_enqueue(
            mapping=customer,
            kind=JobKind.RECORDS,
            direction=Direction.TO_DATAVERSE,
            record_ids=[r["id"] for r in (first, second)],
        )
    )
    for coupling in pairs:
        coupling.refresh_from_db()
        assert not coupling.pending
    restored, surviving = pairs
    sandbox_testing.delete_as_another_user("dataverse", "accounts", restored.dataverse_id)
    sandbox_testing.delete_as_another_user("dataverse", "accounts", surviving.dataverse_id)
    changelist = reverse("admin:coupling_coupling_changelist")

    run_jobs(
        lambda: admin_client.post(changelist, {"action": "restore_deleted_partners", "_selected_action": [restored.pk]})
    )
    restored.refresh_from_db()
    (account,) = rows(dataverse, "accounts", f"accountid eq {restored.dataverse_id}")  # recreated under its old id
    assert account["name"] == first["displayName"]
    assert restored.last_result_to_dataverse == "success"

    admin_client.post(changelist, {"action": "delete_surviving_records", "_selected_action": [surviving.pk]})
    assert not Coupling.objects.filter(pk=surviving.pk).exists()
    assert rows(bc, "customers", f"id eq {second['id']}") == []


def test_uncouple_one_or_all_couplings_of_a_mapping_as_a_job(admin_client, sandbox_connections, customer, run_jobs):
    bc, dataverse = sandbox_connections
    bc_rows = rows(bc, "customers", "blocked eq ' '")[:3]
    dv_rows = rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")[:3]
    couplings = [
        coupling_create(mapping=customer, bc_id=b["id"], dataverse_id=d["accountid"])
        for b, d in zip(bc_rows, dv_rows, strict=True)
    ]
    run_jobs(
        lambda: admin_client.post(
            reverse("admin:coupling_coupling_changelist"),
            {"action": "uncouple_selected", "_selected_action": [couplings[0].pk], "confirm": "yes"},
        )
    )
    assert Coupling.objects.filter(table_mapping=customer).count() == 2
    run_jobs(
        lambda: admin_client.post(
            reverse("admin:mappings_tablemapping_changelist"),
            {"action": "uncouple_all", "_selected_action": [customer.pk], "confirm": "yes"},
        )
    )
    assert not Coupling.objects.filter(table_mapping=customer).exists()
    assert SyncJob.objects.filter(kind=JobKind.UNCOUPLING, status=JobStatus.SUCCEEDED).count() == 2


def test_coupling_needs_the_run_sync_permission(client, django_user_model, sandbox_connections, customer):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_tablemapping", "view_coupling"]))
    client.force_login(viewer)
    bc, dataverse = sandbox_connections
    record = rows(bc, "customers", "blocked eq ' '")[0]
    account = rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")[0]
    url = reverse("admin:mappings_tablemapping_couple", args=[customer.pk])

    page = client.get(url, {"bc": record["id"], "dv": account["accountid"]})
    assert page.status_code == 200
    assert 'name="couple"' not in page.content.decode()  # nothing offered that the user may not do
    assert client.post(url, {"bc": record["id"], "dv": account["accountid"], "couple": "1"}).status_code == 403
    assert not Coupling.objects.exists()


def test_a_refused_match_based_coupling_run_leaves_the_saved_criteria_and_settings_unchanged(admin_client, customer):
    criteria = list(
        customer.field_mappings.filter(enabled=True)
        .exclude(bc_field="")
        .exclude(dataverse_field="")
        .order_by("position", "id")
    )
    customer.field_mappings.update(use_for_matching=False)
    customer.field_mappings.filter(pk=criteria[0].pk).update(use_for_matching=True, match_priority=1)
    settings_before = (customer.create_new_if_no_match, customer.sync_after_match_coupling)
    url = reverse("admin:mappings_tablemapping_match_coupling", args=[customer.pk])
    data = {"form-TOTAL_FORMS": len(criteria), "form-INITIAL_FORMS": len(criteria)}
    for index, field_mapping in enumerate(criteria):  # nothing ticked to match on
        data |= {f"form-{index}-id": field_mapping.pk, f"form-{index}-match_priority": 2}
    if not settings_before[0]:
        data["create_new_if_no_match"] = "on"
    if not settings_before[1]:
        data["sync_after_match_coupling"] = "on"

    response = admin_client.post(url, data, follow=True)

    assert "Tick at least one field to match on." in response.content.decode()
    assert not SyncJob.objects.filter(kind=JobKind.COUPLING).exists()
    matching = list(customer.field_mappings.filter(use_for_matching=True).values_list("pk", "match_priority"))
    assert matching == [(criteria[0].pk, 1)]
    customer.refresh_from_db()
    assert (customer.create_new_if_no_match, customer.sync_after_match_coupling) == settings_before


def test_a_couplings_page_is_a_view_whose_only_way_out_is_uncoupling_with_a_confirmation(
    admin_client, sandbox_connections, customer, run_jobs
):
    bc, dataverse = sandbox_connections
    record = rows(bc, "customers", "blocked eq ' '")[0]
    account = rows(dataverse, "accounts", "statecode eq 0 and customertypecode eq 3")[0]
    coupling = coupling_create(mapping=customer, bc_id=record["id"], dataverse_id=account["accountid"])

    page = admin_client.get(reverse("admin:coupling_coupling_change", args=[coupling.pk])).content.decode()
    assert "View coupling" in page and "Change coupling" not in page
    assert 'name="_save"' not in page  # nothing to save: every field is the engine's
    assert reverse("admin:coupling_coupling_delete", args=[coupling.pk]) not in page
    # A bare delete (the page's or the list's) would leave the Dataverse company stamp and the pair's open errors.
    assert (
        admin_client.post(reverse("admin:coupling_coupling_delete", args=[coupling.pk]), {"post": "yes"}).status_code
        == 403
    )
    admin_client.post(
        reverse("admin:coupling_coupling_changelist"),
        {"action": "delete_selected", "_selected_action": [coupling.pk], "post": "yes"},
    )
    assert Coupling.objects.filter(pk=coupling.pk).exists()

    # The page's Uncouple button posts the list's action for this pair: it asks first, and nothing changes yet.
    assert 'id="uncouple-button"' in page
    button = {"action": "uncouple_selected", "index": "0", "_selected_action": [coupling.pk]}
    asked = admin_client.post(reverse("admin:coupling_coupling_changelist"), button).content.decode()
    assert "Yes, uncouple 1" in asked
    assert Coupling.objects.filter(pk=coupling.pk).exists()
    run_jobs(lambda: admin_client.post(reverse("admin:coupling_coupling_changelist"), {**button, "confirm": "yes"}))
    assert not Coupling.objects.filter(pk=coupling.pk).exists()
    assert SyncJob.objects.get(kind=JobKind.UNCOUPLING).status == JobStatus.SUCCEEDED
    # Both records stay where they were.
    assert rows(bc, "customers", f"id eq {record['id']}") and rows(
        dataverse, "accounts", f"accountid eq {account['accountid']}"
    )


def test_the_uncouple_button_is_offered_only_with_the_run_sync_permission(client, django_user_model, customer):
    from django.contrib.auth.models import Permission

    coupling = Coupling.objects.create(table_mapping=customer, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4())
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_coupling"))
    client.force_login(viewer)
    page = client.get(reverse("admin:coupling_coupling_change", args=[coupling.pk])).content.decode()
    assert "View coupling" in page and 'id="uncouple-button"' not in page
