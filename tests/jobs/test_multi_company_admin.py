"""The admin with several companies: mapping, job and error lists show each row's company and filter by it; a reset
and an export work on one company's mappings; existing mappings migrate to the existing company."""

import json
import uuid

import pytest
from django.urls import reverse

from connectors.choices import ConnectionKind
from connectors.models import Connection
from coupling.models import Coupling
from jobs.models import SyncError, SyncJob
from mappings.defaults import create_default_mappings
from mappings.models import TableMapping


def _connection(name: str, company_id: str) -> Connection:
    connection = Connection(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name=name,
        environment_url="https://api.businesscentral.dynamics.com",
        tenant="contoso.onmicrosoft.com",
        bc_environment="production",
        bc_company_id=company_id,
        client_id="app",
    )
    connection.save()
    return connection


@pytest.fixture
def companies(db):
    usa = _connection("CRONUS USA", "70c0c603-f4f9-ef11-9344-6045bdc8c234")
    canada = _connection("CRONUS Canada", "70c0c603-f4f9-ef11-9344-6045bdc8c235")
    TableMapping.objects.filter(company__isnull=True).update(company=usa)
    create_default_mappings(company=canada)
    return usa, canada


def test_mapping_list_shows_and_filters_by_company(admin_client, companies):
    usa, canada = companies
    page = admin_client.get("/admin/mappings/tablemapping/").content.decode()
    assert "CRONUS USA" in page and "CRONUS Canada" in page
    filtered = admin_client.get(f"/admin/mappings/tablemapping/?company__id__exact={canada.pk}")
    shown = list(filtered.context["cl"].result_list)
    assert len(shown) == 5 and {m.company_id for m in shown} == {canada.pk}


def test_job_error_schedule_and_coupling_lists_filter_by_company(admin_client, companies):
    usa, canada = companies
    job_usa = SyncJob.objects.create(table_mapping=TableMapping.objects.get(company=usa, name="CUSTOMER"))
    job_canada = SyncJob.objects.create(table_mapping=TableMapping.objects.get(company=canada, name="CUSTOMER"))
    for job in (job_usa, job_canada):
        SyncError.objects.create(job=job, table_mapping=job.table_mapping, direction="to_dataverse", message="x")

    response = admin_client.get(f"/admin/jobs/syncjob/?table_mapping__company__id__exact={canada.pk}")
    assert [j.pk for j in response.context["cl"].result_list] == [job_canada.pk]
    assert "CRONUS Canada" in response.content.decode()
    response = admin_client.get(f"/admin/jobs/syncerror/?company={usa.pk}")
    assert [e.job_id for e in response.context["cl"].result_list] == [job_usa.pk]
    response = admin_client.get(f"/admin/jobs/schedule/?table_mapping__company__id__exact={canada.pk}")
    schedules = list(response.context["cl"].result_list)
    assert len(schedules) == 5 and {s.table_mapping.company_id for s in schedules} == {canada.pk}
    Coupling.objects.create(table_mapping=job_canada.table_mapping, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4())
    Coupling.objects.create(table_mapping=job_usa.table_mapping, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4())
    response = admin_client.get(f"/admin/coupling/coupling/?company={canada.pk}")
    assert [c.table_mapping_id for c in response.context["cl"].result_list] == [job_canada.table_mapping_id]


def test_reset_and_export_work_on_one_companys_mappings(admin_client, companies):
    usa, canada = companies
    TableMapping.objects.filter(name="CUSTOMER").update(table_filter="")
    response = admin_client.post(
        reverse("admin:mappings_tablemapping_reset"), {"names": "CUSTOMER", "company": canada.pk, "confirm": "yes"}
    )
    assert response.status_code == 302
    filters = dict(TableMapping.objects.filter(name="CUSTOMER").values_list("company__name", "table_filter"))
    assert filters == {"CRONUS Canada": "blocked eq ' '", "CRONUS USA": ""}

    # Without a company the export cannot tell whose CUSTOMER it is: it says so, and exports nothing.
    response = admin_client.get(reverse("admin:mappings_tablemapping_export"), follow=True)
    assert "choose the company" in response.content.decode()
    document = json.loads(
        admin_client.get(reverse("admin:mappings_tablemapping_export") + f"?company={usa.pk}").content
    )
    assert sorted(m["name"] for m in document["table_mappings"]) == sorted(
        TableMapping.objects.filter(company=usa).values_list("name", flat=True)
    )


def test_a_mapping_name_is_unique_within_its_company_only(companies):
    from django.db import IntegrityError, transaction

    usa, canada = companies
    assert TableMapping.objects.filter(name="CUSTOMER").count() == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        TableMapping.objects.create(name="CUSTOMER", company=usa, bc_entity_set="customers")


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_the_full_synchronization_review_is_per_company(
    admin_client, sandbox_connections, django_capture_on_commit_callbacks
):
    from sandbox import services as sandbox

    usa, _ = sandbox_connections
    sandbox.seed_second_company(customers=7, shared=2)
    canada = Connection.objects.get(pk=usa.pk)
    canada.pk, canada.name, canada.bc_company_id = None, "CRONUS Canada", sandbox.second_company_id()
    canada.save()
    TableMapping.objects.filter(company__isnull=True).update(company=usa)
    create_default_mappings(company=canada)
    url = reverse("admin:mappings_tablemapping_full_sync_review")

    page = admin_client.get(url + f"?company={canada.pk}")
    lines = {line.mapping.name: line for line in page.context["lines"]}
    assert {line.mapping.company_id for line in page.context["lines"]} == {canada.pk}
    assert lines["CUSTOMER"].bc_count == _unblocked_customers(canada)  # counted in the company's own company
    assert "CRONUS Canada" in page.content.decode() and f'name="company" value="{canada.pk}"' in page.content.decode()
    usa_page = admin_client.get(url + f"?company={usa.pk}")
    usa_customer = {line.mapping.name: line for line in usa_page.context["lines"]}["CUSTOMER"]
    assert usa_customer.bc_count == _unblocked_customers(usa) != _unblocked_customers(canada)

    with django_capture_on_commit_callbacks():
        admin_client.post(url, {"mapping": ["CUSTOMER"], "company": canada.pk, "preview": "1"})
    jobs = SyncJob.objects.all()
    assert jobs and {j.table_mapping_id for j in jobs} == {TableMapping.objects.get(company=canada, name="CUSTOMER").pk}


def _unblocked_customers(company) -> int:
    from sandbox import rows, schema
    from sandbox.models import row_model

    customers = row_model(schema.table("bc", "customers")).objects.using(rows.DB)
    return customers.filter(company=str(company.bc_company_id), blocked=" ").count()


def test_export_and_import_commands_take_the_company(companies, tmp_path):
    from django.core.management import CommandError, call_command

    usa, canada = companies
    with pytest.raises(CommandError, match="choose the company. Give it with --company"):
        call_command("export_mappings", "--output", str(tmp_path / "all.json"))
    call_command("export_mappings", "--company", "CRONUS Canada", "--output", str(tmp_path / "canada.json"))
    document = json.loads((tmp_path / "canada.json").read_text())
    document["table_mappings"] = [m for m in document["table_mappings"] if m["name"] != "CONTACT"]
    (tmp_path / "canada.json").write_text(json.dumps(document))
    with pytest.raises(CommandError, match="No Business Central connection named 'Nowhere'"):
        call_command("import_mappings", str(tmp_path / "canada.json"), "--company", "Nowhere")
    call_command("import_mappings", str(tmp_path / "canada.json"), "--company", "CRONUS Canada")
    assert not TableMapping.objects.filter(company=canada, name="CONTACT").exists()  # the file is that company's now
    assert TableMapping.objects.filter(company=usa, name="CONTACT").exists()  # the other company's are untouched


def test_the_run_confirmation_names_each_jobs_company(admin_client, companies):
    """Synchronizing both companies' CURRENCY asks first with one row per company and direction, told apart by the
    company (the walk-through saw identical rows)."""
    usa, canada = companies
    currencies = TableMapping.objects.filter(name="CURRENCY")
    html = admin_client.post(
        reverse("admin:mappings_tablemapping_changelist"),
        {"action": "synchronize_modified_records", "_selected_action": [m.pk for m in currencies]},
    ).content.decode()
    assert "are you sure?" in html and not SyncJob.objects.filter(dry_run=False).exists()  # previews only
    assert "CURRENCY (CRONUS USA)" in html and "CURRENCY (CRONUS Canada)" in html
