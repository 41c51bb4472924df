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
    # The company under each mapping's name (one cell: the list must fit 1,366 px).
    companies = {cell.splitlines()[-1] for cell in rows.locator("th.field-name_display").all_inner_texts()}
    assert companies == {"CRONUS Canada (Business Central)"}
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


# Each header of the mapping list against the list's own box and the window: a header past either edge is cut off.
HEADERS_CUT = """() => {
  const results = document.querySelector('#changelist .results');
  const frame = results.getBoundingClientRect();
  const right = Math.min(frame.right, document.documentElement.clientWidth) + 1;
  const cut = [];
  for (const th of document.querySelectorAll('#result_list thead th')) {
    const box = th.getBoundingClientRect();
    if (box.right > right) cut.push(th.className + ' (' + Math.round(box.right) + ' > ' + Math.round(right) + ')');
  }
  return {cut: cut, scroll: results.scrollWidth, width: results.clientWidth};
}"""


def test_every_column_of_the_mapping_list_of_two_companies_fits_a_1366_screen(page, two_companies):
    from sandbox.models import Company

    usa, canada = two_companies
    # The demo's long company names, the widest a cell gets ("Sandbox Business Central Canada (Business Central)").
    for connection, company in ((usa, "Sandbox Business Central"), (canada, "Sandbox Business Central Canada")):
        connection.name = company
        connection.save()
    assert Company.objects.count() == 2
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/admin/mappings/tablemapping/")
    page.shot("mapping-list-two-companies-1366")
    found = page.evaluate(HEADERS_CUT)
    assert found["cut"] == [] and found["scroll"] <= found["width"], found
    headers = [text.strip().lower() for text in page.locator("#result_list thead th").all_inner_texts()]
    for column in ("name / company", "last sync", "errors", "skipped"):
        assert column in headers
    # "default" is a marker beside the name of each default mapping, the company under it.
    first = page.locator("#result_list tbody tr").first.locator("th.field-name_display")
    assert first.locator(".default-marker").inner_text() == "default"
    assert first.inner_text().splitlines()[-1].endswith("(Business Central)")


def test_show_their_fields_keeps_the_chosen_company_and_the_typed_filter(page, two_companies):
    from mappings.models import TableMapping

    usa, canada = two_companies
    before = TableMapping.objects.count()
    page.goto("/admin/mappings/tablemapping/add/")
    page.fill("#id_name", "ITEM")
    page.select_option("#id_company", str(canada.pk))
    page.fill("#id_bc_entity_set", "items")
    page.fill("#id_dataverse_entity_set", "products")
    page.fill("#id_table_filter", "blocked eq false")
    page.click("#show-fields-link")
    page.wait_for_selector("datalist#bc-fields option[value=unitPrice]", state="attached")

    assert page.input_value("#id_company") == str(canada.pk)
    assert page.input_value("#id_table_filter") == "blocked eq false"
    assert page.input_value("#id_name") == "ITEM"
    assert page.locator(".errornote, .errorlist").count() == 0
    assert TableMapping.objects.count() == before
