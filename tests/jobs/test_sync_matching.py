"""Beyond Business Central: a normal sync couples uncoupled records whose match fields agree, for every mapping
with match criteria (BC does this only for currencies), instead of ignoring them or creating duplicates."""

import pytest

from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.services import sync_enqueue
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def run(mapping_name, django_capture_on_commit_callbacks, rq_worker, **options):
    mapping = TableMapping.objects.get(name=mapping_name)
    with django_capture_on_commit_callbacks(execute=True):
        jobs = sync_enqueue(mapping=mapping, **options)
    rq_worker()
    for job in jobs:
        job.refresh_from_db()
    return jobs


def test_modified_runs_couple_currencies_and_salespeople_by_their_match_fields_then_customers_sync(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    (currency_job,) = run("CURRENCY", django_capture_on_commit_callbacks, rq_worker)
    (salespeople_job,) = run("SALESPEOPLE", django_capture_on_commit_callbacks, rq_worker)

    assert currency_job.status == JobStatus.SUCCEEDED, currency_job.message
    assert currency_job.coupled > 0 and currency_job.inserted == 0
    currency_pairs = Coupling.objects.filter(table_mapping__name="CURRENCY")
    assert currency_pairs.count() == currency_job.coupled
    assert all(c.bc_name and c.dataverse_name for c in currency_pairs)
    assert salespeople_job.coupled > 0 and salespeople_job.failed == 0

    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.sync_only_coupled = False
    customer.save()
    to_dataverse, _ = run("CUSTOMER", django_capture_on_commit_callbacks, rq_worker)
    assert to_dataverse.failed == 0, list(to_dataverse.errors.values_list("message", flat=True)[:3])
    assert to_dataverse.inserted > 0


def test_a_preview_shows_the_matches_without_coupling_anything(
    sandbox_connections, django_capture_on_commit_callbacks, rq_worker
):
    (job,) = run("CURRENCY", django_capture_on_commit_callbacks, rq_worker, dry_run=True)
    assert job.status == JobStatus.SUCCEEDED
    assert job.preview["counts"].get("update", 0) + job.preview["counts"].get("unchanged", 0) > 0
    assert not Coupling.objects.filter(table_mapping__name="CURRENCY").exists()


@pytest.fixture
def customer_matched_by_name(sandbox_connections):
    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.sync_only_coupled = False
    mapping.save()
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    mapping.field_mappings.filter(bc_field="displayName").update(use_for_matching=True)
    return mapping


def accounts_named(sandbox_connections, name):
    from connectors.clients import open_client

    with open_client(sandbox_connections[1]) as client:
        return [row for page in client.read_pages("accounts", filter=f"name eq '{name}'") for row in page.rows]


@pytest.mark.parametrize("twin_side", ["dataverse", "bc"])
def test_an_ambiguous_match_is_neither_coupled_nor_created_again_and_waits_to_be_coupled_by_hand(
    customer_matched_by_name, sandbox_connections, django_capture_on_commit_callbacks, rq_worker, twin_side
):
    """Two accounts match one customer, or two customers one account: a new account would be one more twin."""
    from coupling.models import AmbiguousMatch
    from coupling.services import coupling_create
    from jobs.models import SyncError
    from sandbox import testing as sandbox

    customer = sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading")
    other_customer = sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading")
    account = sandbox.create_as_another_user("dataverse", "accounts", name="Twin Trading", customertypecode=3)
    if twin_side == "dataverse":
        sandbox.delete_as_another_user("bc", "customers", other_customer)
        sandbox.create_as_another_user("dataverse", "accounts", name="Twin Trading", customertypecode=3)
    twins = [customer] if twin_side == "dataverse" else [customer, other_customer]

    (to_dataverse,) = run("CUSTOMER", django_capture_on_commit_callbacks, rq_worker, direction="to_dataverse")

    assert to_dataverse.status == JobStatus.PARTLY_FAILED
    errors = SyncError.objects.filter(job=to_dataverse, error_class="ambiguous_match")
    assert sorted(errors.values_list("bc_id", flat=True)) == sorted(twins)
    assert "Twin Trading" in errors.first().message
    assert len(accounts_named(sandbox_connections, "Twin Trading")) == (2 if twin_side == "dataverse" else 1)
    assert not Coupling.objects.filter(bc_id__in=twins).exists()
    listed = AmbiguousMatch.objects.get(table_mapping=customer_matched_by_name, record_id=customer)
    assert account in [uuid_of(c["id"]) for c in listed.candidates]

    coupling_create(mapping=customer_matched_by_name, bc_id=customer, dataverse_id=account)  # the click
    assert not AmbiguousMatch.objects.filter(record_id=customer).exists()
    (again,) = run(
        "CUSTOMER", django_capture_on_commit_callbacks, rq_worker, direction="to_dataverse", kind="records",
        record_ids=[str(customer)],
    )  # fmt: skip
    assert (again.failed, again.modified + again.unchanged) == (0, 1)
    assert len(accounts_named(sandbox_connections, "Twin Trading")) == (2 if twin_side == "dataverse" else 1)


def test_after_one_twin_is_coupled_the_other_is_shown_its_taken_candidate_and_leaves_the_list_once_synchronized(
    customer_matched_by_name, sandbox_connections, django_capture_on_commit_callbacks, rq_worker, admin_client
):
    from django.urls import reverse

    from coupling.models import AmbiguousMatch
    from coupling.services import coupling_create
    from jobs.models import SyncError
    from sandbox import testing as sandbox

    first = sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading")
    second = sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading")
    account = sandbox.create_as_another_user("dataverse", "accounts", name="Twin Trading", customertypecode=3)
    run("CUSTOMER", django_capture_on_commit_callbacks, rq_worker, direction="to_dataverse")
    error = SyncError.objects.get(bc_id=second, error_class="ambiguous_match")

    page = admin_client.get(reverse("admin:jobs_syncerror_change", args=[error.pk])).content.decode()
    match_page = reverse("admin:mappings_tablemapping_match_coupling", args=[customer_matched_by_name.pk])
    assert f'href="{match_page}#record-{second}"' in page  # straight to its row of candidates
    assert "no new record was created" in page and "Both records" not in page  # no partner to compare yet

    coupling_create(mapping=customer_matched_by_name, bc_id=first, dataverse_id=account)
    page = admin_client.get(match_page).content.decode()
    row = page[page.index(f'id="record-{second}"') :].split("</tr>")[0]
    assert "is coupled to another record now" in row and "Couple with" not in row

    (later,) = run(
        "CUSTOMER", django_capture_on_commit_callbacks, rq_worker, direction="to_dataverse", kind="records",
        record_ids=[str(second)],
    )  # fmt: skip
    assert later.inserted == 1  # its only candidate is taken: it is a customer of its own
    assert not AmbiguousMatch.objects.filter(record_id__in=[first, second]).exists()


def uuid_of(value):
    import uuid

    return uuid.UUID(str(value))


def test_without_the_run_sync_permission_the_candidates_are_listed_but_not_offered_for_coupling(
    customer_matched_by_name, sandbox_connections, django_capture_on_commit_callbacks, rq_worker, client,
    django_user_model,
):  # fmt: skip
    from django.contrib.auth.models import Permission
    from django.urls import reverse

    from sandbox import testing as sandbox

    sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading")
    sandbox.create_as_another_user("bc", "customers", displayName="Twin Trading")
    sandbox.create_as_another_user("dataverse", "accounts", name="Twin Trading", customertypecode=3)
    run("CUSTOMER", django_capture_on_commit_callbacks, rq_worker, direction="to_dataverse")
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_tablemapping", "view_coupling", "view_fieldmapping"])
    )
    client.force_login(viewer)

    page = client.get(reverse("admin:mappings_tablemapping_match_coupling", args=[customer_matched_by_name.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Twin Trading" in html and "Couple with" not in html


def test_candidates_of_the_same_name_show_what_tells_them_apart_and_the_couple_page_the_bc_number(
    customer_matched_by_name, sandbox_connections, django_capture_on_commit_callbacks, rq_worker, admin_client
):
    """Two accounts "Garcia LLC" were offered as two identical buttons: each now shows its city and e-mail, and the
    Business Central record picked on the couple page shows its number."""
    from django.urls import reverse

    from coupling.models import AmbiguousMatch
    from sandbox import testing as sandbox

    customer = sandbox.create_as_another_user("bc", "customers", displayName="Garcia LLC", city="Oslo")
    from connectors.clients import open_client

    with open_client(sandbox_connections[0]) as client:
        number = client.read_by_ids("customers", [customer])[customer]["number"]
    sandbox.create_as_another_user(
        "dataverse", "accounts", name="Garcia LLC", customertypecode=3, address1_city="Bergen",
        emailaddress1="bergen@garcia.example",
    )  # fmt: skip
    sandbox.create_as_another_user(
        "dataverse", "accounts", name="Garcia LLC", customertypecode=3, address1_city="Tromsø",
        emailaddress1="tromso@garcia.example",
    )  # fmt: skip
    run("CUSTOMER", django_capture_on_commit_callbacks, rq_worker, direction="to_dataverse")

    listed = AmbiguousMatch.objects.get(table_mapping=customer_matched_by_name, record_id=customer)
    assert sorted(c["details"] for c in listed.candidates) == [
        "Bergen · bergen@garcia.example",
        "Tromsø · tromso@garcia.example",
    ]
    page = admin_client.get(
        reverse("admin:mappings_tablemapping_match_coupling", args=[customer_matched_by_name.pk])
    ).content.decode()
    row = page[page.index(f'id="record-{customer}"') :].split("</tr>")[0]
    assert "Couple with Garcia LLC <small>(Bergen · bergen@garcia.example)</small>" in row
    assert "Couple with Garcia LLC <small>(Tromsø · tromso@garcia.example)</small>" in row

    couple = admin_client.get(
        reverse("admin:mappings_tablemapping_couple", args=[customer_matched_by_name.pk]), {"bc": str(customer)}
    ).content.decode()
    assert f'<strong>Garcia LLC</strong> <span class="details">({number} · Oslo)</span>' in couple
