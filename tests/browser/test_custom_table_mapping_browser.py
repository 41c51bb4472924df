"""A mapping of a custom Business Central API page to a custom Dataverse table, made in the browser from the two
systems' metadata (1366x768), refused while a choice has no value map, then synchronized both ways over real HTTP."""

import pytest
from playwright.sync_api import expect

from connectors.clients import open_client
from connectors.types import WriteOperation
from coupling.models import Coupling
from jobs.choices import JobStatus
from jobs.models import SyncJob
from jobs.services import sync_enqueue
from mappings.models import TableMapping

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True, databases=["default", "sandbox"]),
]
PROJECTS = "contoso/projects/v1.0/projects"
STATUS_MAP = {"Planning": 100000000, "Open": 100000001, "Completed": 100000002}


@pytest.fixture
def small_page(browser, live_server, admin_user, settings):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # plain http on localhost
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1366, "height": 768})
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto("/admin/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    yield page
    context.close()


def _fill_value_map(page, index: int, value_map: dict) -> None:
    """Enter a value map as a person does: open the field's value-map form, one row per value."""
    name = f"field_mappings-{index}-value_map"
    page.locator(f"details:has(input[name='{name}__0__key']) > summary").click()
    for row, (key, value) in enumerate(value_map.items()):
        page.fill(f"input[name='{name}__{row}__key']", str(key))
        page.fill(f"input[name='{name}__{row}__value']", str(value))


def _fill_row(page, index: int, bc_field: str, dataverse_field: str) -> None:
    if page.locator(f"#id_field_mappings-{index}-bc_field").count() == 0:
        page.click(".add-row a")
    page.fill(f"#id_field_mappings-{index}-position", str(index + 1))
    page.fill(f"#id_field_mappings-{index}-bc_field", bc_field)
    page.fill(f"#id_field_mappings-{index}-dataverse_field", dataverse_field)


def _run(mapping, direction, rq_worker):
    jobs = sync_enqueue(mapping=mapping, direction=direction)
    rq_worker()
    for job in jobs:
        job = SyncJob.objects.get(pk=job.pk)
        assert job.status == JobStatus.SUCCEEDED, [e.message for e in job.errors.all()]
    return SyncJob.objects.get(pk=jobs[0].pk)


def test_a_custom_table_mapping_made_from_metadata_in_the_browser_syncs_both_ways(
    small_page, live_connections, rq_worker, settings, screenshot_dir
):
    settings.SYNC_BC_API_ROUTES = ["contoso/projects/v1.0"]
    bc_connection, dataverse_connection = live_connections
    with open_client(bc_connection) as bc:
        [bc_project] = bc.write_many(
            [WriteOperation("create", PROJECTS, "p", {"description": "Warehouse fit-out", "budgetAmount": 1200})]
        )
        assert bc_project.ok, bc_project.error
    page = small_page

    # The add form offers both systems' tables from their metadata, custom ones included.
    page.goto("/admin/mappings/tablemapping/add/")
    expect(page.locator(f"datalist#bc-tables option[value='{PROJECTS}']")).to_have_count(1)
    expect(page.locator("datalist#bc-tables option[value=items]")).to_have_count(1)
    expect(page.locator("datalist#dataverse-tables option[value=cr123_projects]")).to_have_count(1)
    page.fill("#id_name", "PROJECT")
    page.fill("#id_bc_entity_set", PROJECTS)
    page.fill("#id_dataverse_entity_set", "cr123_projects")
    page.click("#show-fields-link")

    # Then the fields of both, with type, length, required flag, lookup target and option values.
    expect(page.locator("#id_bc_entity_set")).to_have_value(PROJECTS)
    bc_fields = page.locator("datalist#bc-fields option[value=description]")
    expect(bc_fields).to_have_text("string(100)")
    expect(page.locator("datalist#bc-fields option[value=status]")).to_contain_text("options: Planning, Open")
    expect(page.locator("datalist#dataverse-fields option[value=cr123_name]")).to_have_text("string(100); required")
    expect(page.locator("datalist#dataverse-fields option[value=cr123_accountid]")).to_contain_text(
        "lookup to accounts"
    )
    expect(page.locator("datalist#dataverse-fields option[value=cr123_status]")).to_contain_text(
        "options: 100000000 Planning"
    )
    page.screenshot(path=str(screenshot_dir / "custom-table-mapping-add.png"))
    page.fill("#id_dataverse_primary_key", "cr123_projectid")
    page.fill("#id_bc_name_field", "description")
    page.fill("#id_dataverse_name_field", "cr123_name")
    page.uncheck("#id_sync_only_coupled")
    _fill_row(page, 0, "description", "cr123_name")
    _fill_row(page, 1, "number", "cr123_number")
    _fill_row(page, 2, "budgetAmount", "cr123_budget")
    _fill_row(page, 3, "status", "cr123_status")

    # A Business Central option into a Dataverse choice without a value map is refused with the reason.
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text(
        "status (enum) cannot be written to the choice cr123_status without a value map"
    )
    page.screenshot(path=str(screenshot_dir / "custom-table-mapping-refused.png"))
    assert not TableMapping.objects.filter(name="PROJECT").exists()
    _fill_value_map(page, 3, STATUS_MAP)
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    mapping = TableMapping.objects.get(name="PROJECT")
    assert mapping.field_mappings.count() == 4

    # To Dataverse: the Business Central project becomes a cr123_project row.
    assert _run(mapping, "to_dataverse", rq_worker).inserted == 1
    coupling = Coupling.objects.get(table_mapping=mapping)
    with open_client(dataverse_connection) as dataverse:
        row = dataverse.read_by_ids("cr123_projects", [coupling.dataverse_id])[coupling.dataverse_id]
        assert (row["cr123_name"], row["cr123_number"], row["cr123_budget"]) == ("Warehouse fit-out", "PRJ00010", 1200)
        assert row["cr123_status"] == STATUS_MAP["Planning"]
        # From Dataverse: a change there and a row made there reach Business Central.
        [changed, created] = dataverse.write_many(
            [
                WriteOperation(
                    "update",
                    "cr123_projects",
                    "u",
                    {"cr123_budget": 1500, "cr123_status": STATUS_MAP["Open"]},
                    coupling.dataverse_id,
                ),
                WriteOperation(
                    "create",
                    "cr123_projects",
                    "c",
                    {"cr123_name": "Roof repair", "cr123_budget": 300, "cr123_status": STATUS_MAP["Completed"]},
                ),
            ]
        )
        assert changed.ok and created.ok, (changed.error, created.error)
    mapping.refresh_from_db()
    from_dataverse = _run(mapping, "from_dataverse", rq_worker)
    assert (from_dataverse.modified, from_dataverse.inserted) == (1, 1)
    with open_client(bc_connection) as bc:
        projects = {r["description"]: r for page_ in bc.read_pages(PROJECTS) for r in page_.rows}
    assert projects["Warehouse fit-out"]["budgetAmount"] == 1500 and projects["Warehouse fit-out"]["status"] == "Open"
    assert (projects["Roof repair"]["budgetAmount"], projects["Roof repair"]["status"]) == (300, "Completed")
    assert Coupling.objects.filter(table_mapping=mapping).count() == 2
