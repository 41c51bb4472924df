"""The table mapping admin clicked through in headless Chromium: names offered from metadata, a filter tried
before saving, a validation message, and the reset action with its confirmation."""

import re

import pytest
from playwright.sync_api import expect

from mappings.defaults import default_mapping
from mappings.models import TableMapping
from mappings.serialization import table_mapping_to_dict

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True, databases=["default", "sandbox"]),
]


def test_edit_try_a_filter_get_refused_then_reset_to_the_defaults(mapping_page, live_sandbox_connections):
    page = mapping_page
    customer = TableMapping.objects.get(name="CUSTOMER")
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    # The field inputs offer the columns of both tables, read from the connections' metadata.
    expect(page.locator("datalist#bc-fields option[value=salespersonCode]")).to_have_count(1)
    expect(page.locator("datalist#dataverse-fields option[value=address1_freighttermscode]")).to_have_count(1)

    # Try an unsaved filter: the page counts what it selects on each side.
    page.fill("#id_table_filter", "blocked eq ' ' and displayName eq 'nobody at all'")
    page.click("#test-filter-link")
    counts = page.locator(".match-count")
    expect(counts).to_have_count(2)
    assert counts.nth(0).inner_text() == "0" and int(counts.nth(1).inner_text()) > 0

    # A filter on a field the table does not have is refused, with a close match, and nothing is saved.
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    page.fill("#id_table_filter", "blockd eq ' '")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text("has no field 'blockd'. Did you mean \"blocked\"?")
    assert TableMapping.objects.get(name="CUSTOMER").table_filter == "blocked eq ' '"

    # A valid edit saves; then the reset action shows the change, asks, and restores the default.
    page.fill("#id_table_filter", "blocked eq 'All'")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    page.check(f"input.action-select[value='{customer.pk}']")
    page.select_option("select[name=action]", "reset_to_defaults")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text(
        re.compile(r"table_filter: \"blocked eq 'All'\" -> \"blocked eq ' '\"")
    )
    page.click("text=Yes, reset them")
    expect(page.locator("ul.messagelist")).to_contain_text("Reset to the defaults: CUSTOMER. Couplings were kept.")
    assert table_mapping_to_dict(TableMapping.objects.get(name="CUSTOMER")) == default_mapping("CUSTOMER")


def test_templates_for_new_records_are_added_inline_and_a_bad_filter_is_refused_on_its_row(
    mapping_page, live_sandbox_connections
):
    """With metadata: a template's filter names a field of the source table (Business Central's, for records
    created in Dataverse), and its values a column of the target table."""
    from mappings.models import NewRecordTemplate

    page = mapping_page
    customer = TableMapping.objects.get(name="CUSTOMER")
    page.goto(f"/admin/mappings/tablemapping/{customer.pk}/change/")
    group = page.locator("#new_record_templates-group")
    group.locator(".add-row a").click()
    page.fill("#id_new_record_templates-0-name", "Foreign")
    page.select_option("#id_new_record_templates-0-target", "dataverse")
    page.fill("#id_new_record_templates-0-source_filter", "contry ne 'US'")
    page.fill("#id_new_record_templates-0-values", '{"description": "Foreign terms"}')
    page.click("input[name=_save]")
    expect(group.locator(".errorlist")).to_contain_text("'contry'")
    assert not NewRecordTemplate.objects.exists()

    page.fill("#id_new_record_templates-0-source_filter", "country ne 'US'")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    (template,) = NewRecordTemplate.objects.filter(table_mapping=customer)
    assert (template.name, template.source_filter, template.values) == (
        "Foreign",
        "country ne 'US'",
        {"description": "Foreign terms"},
    )
