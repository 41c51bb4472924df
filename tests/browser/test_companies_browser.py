"""Several companies in the admin, as a browser shows them: the mapping list names each mapping's company and
filters by it; the multi-company option is set on the change form; the job list says whose run each job was."""

import pytest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "sandbox"]),
]


@pytest.fixture
def two_companies(live_connections):
    from connectors.models import Connection
    from jobs.models import SyncJob
    from mappings.defaults import create_default_mappings
    from mappings.models import TableMapping
    from sandbox import services as sandbox

    usa, _ = live_connections
    sandbox.seed_second_company(customers=5, shared=2)
    canada = Connection.objects.get(pk=usa.pk)
    canada.pk, canada.name, canada.bc_company_id = None, "CRONUS Canada", sandbox.second_company_id()
    canada.save()
    TableMapping.objects.filter(company__isnull=True).update(company=usa)
    create_default_mappings(company=canada)
    SyncJob.objects.create(table_mapping=TableMapping.objects.get(company=canada, name="CUSTOMER"))
    return usa, canada


def test_filter_the_mapping_list_by_company_and_make_a_mapping_multi_company(page, two_companies):
    from mappings.models import TableMapping

    usa, canada = two_companies
    page.goto("/admin/mappings/tablemapping/")
    assert page.locator("#result_list tbody tr").count() == 10
    page.locator("#changelist-filter a", has_text="CRONUS Canada").click()
    page.wait_for_url("**company__id__exact=*")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 5
    assert set(rows.locator("td.field-company").all_inner_texts()) == {"CRONUS Canada (Business Central)"}
    page.shot("mappings-of-one-company")

    rows.locator("th a", has_text="CUSTOMER").click()
    page.check("#id_multi_company")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert TableMapping.objects.get(company=canada, name="CUSTOMER").multi_company
    assert not TableMapping.objects.get(company=usa, name="CUSTOMER").multi_company

    page.goto("/admin/jobs/syncjob/")
    # The mapping's cell names its company below it (one cell: the list must fit 1,366 px).
    cells = page.locator("#result_list td.field-mapping_display").all_inner_texts()
    assert [cell.splitlines() for cell in cells] == [["CUSTOMER", "CRONUS Canada (Business Central)"]]
