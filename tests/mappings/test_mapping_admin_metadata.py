"""Validation against the connections' metadata (the sandbox over in-process HTTP), through the admin's change form
(Django test client, logged in): names, types, lookups and lengths, each with its specific message, nothing saved.
Also the "Test filter" page, which counts matching records on both systems."""

import re

import pytest
from django.urls import reverse

from mappings.models import TableMapping
from mappings.services import configuration_snapshot

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"]), pytest.mark.usefixtures("sandbox_connections")]


def _submit_refused(admin_client, url, data, message):
    before = configuration_snapshot()
    response = admin_client.post(url, data)
    html = response.content.decode()
    assert response.status_code == 200, "the form should come back with errors, not redirect"
    assert message in html, re.findall(r"errorlist[^>]*>(.*?)</ul>", html, re.S)
    assert configuration_snapshot() == before


def test_the_defaults_pass_the_metadata_checks_and_the_form_offers_the_fields_of_both_tables(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    response = admin_client.get(url)
    html = response.content.decode()
    assert '<datalist id="bc-fields">' in html and '<option value="displayName">' in html
    assert '<datalist id="dataverse-fields">' in html and '<option value="address1_freighttermscode">' in html
    data["table_filter"] = "blocked eq ' ' and city ne 'Nowhere'"
    response = admin_client.post(url, data, follow=True)
    assert response.redirect_chain, re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S)
    assert "names were not checked" not in response.content.decode()
    assert TableMapping.objects.get(name="CUSTOMER").table_filter == "blocked eq ' ' and city ne 'Nowhere'"
    for name in ("SALESPEOPLE", "VENDOR", "CONTACT", "CURRENCY"):
        url, data = change_form.data(admin_client, name)
        response = admin_client.post(url, data)
        assert response.status_code == 302, (
            name,
            re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S),
        )


def test_an_unknown_field_name_is_refused_with_close_matches(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(data, bc_field="emial", dataverse_field="emailaddress2")
    _submit_refused(
        admin_client,
        url,
        data,
        "Business Central table customers has no field &#x27;emial&#x27;. Did you mean &quot;email&quot;",
    )


def test_an_unknown_field_in_a_filter_is_refused_with_close_matches(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["table_filter"] = "blockd eq ' '"
    _submit_refused(admin_client, url, data, "has no field &#x27;blockd&#x27;. Did you mean &quot;blocked&quot;?")


def test_a_filter_comparing_a_choice_with_text_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "VENDOR")
    data["integration_table_filter"] = "statecode eq 0 and customertypecode eq 'Vendor'"
    _submit_refused(
        admin_client, url, data, "customertypecode is a choice field: compare it with number values (1 Competitor"
    )


def test_text_into_a_choice_without_a_value_map_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(
        data, bc_field="displayName", dataverse_field="address1_shippingmethodcode", direction="to_dataverse"
    )
    _submit_refused(
        admin_client, url, data, "cannot be written to the choice address1_shippingmethodcode without a value map"
    )


def test_the_same_field_with_a_value_map_is_accepted(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(
        data,
        bc_field="displayName",
        dataverse_field="address1_shippingmethodcode",
        direction="to_dataverse",
        value_map='{"DHL": 2}',
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302


def test_a_lookup_with_no_mapping_to_go_through_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data[change_form.field_key(data, "currencyCode", "transactioncurrencyid", "lookup_mapping")] = ""
    _submit_refused(
        admin_client,
        url,
        data,
        "transactioncurrencyid is a lookup to transactioncurrencies: choose the mapping to resolve it through.",
    )


def test_a_lookup_through_a_mapping_of_another_table_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    salespeople = TableMapping.objects.get(name="SALESPEOPLE")
    data[change_form.field_key(data, "currencyCode", "transactioncurrencyid", "lookup_mapping")] = str(salespeople.pk)
    _submit_refused(
        admin_client,
        url,
        data,
        "transactioncurrencyid points to transactioncurrencies, but SALESPEOPLE couples systemusers.",
    )


def test_a_constant_longer_than_the_target_column_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(
        data, bc_field="", dataverse_field="accountnumber", direction="to_dataverse", constant_value="X" * 30
    )
    _submit_refused(admin_client, url, data, "is 30 characters long, longer than the 20 that accountnumber takes.")


def test_writing_a_read_only_column_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CONTACT")
    data[change_form.field_key(data, "displayName", "lastname", "dataverse_field")] = "fullname"
    _submit_refused(admin_client, url, data, "Dataverse column fullname is read-only: To Dataverse cannot write to it.")


def test_a_value_for_new_records_that_is_not_an_option_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "VENDOR")
    data["dataverse_new_record_values"] = '{"customertypecode": 99}'
    _submit_refused(admin_client, url, data, "Values for new records: 99 is not an option of customertypecode")


def test_the_test_filter_page_counts_matching_records_on_both_systems(admin_client):
    customer = TableMapping.objects.get(name="CUSTOMER")
    url = reverse("admin:mappings_tablemapping_test_filter", args=[customer.pk])
    response = admin_client.get(url)
    counts = [int(n) for n in re.findall(r'class="match-count">(\d+)<', response.content.decode())]
    assert len(counts) == 2 and all(n > 0 for n in counts), response.content.decode()[-3000:]

    response = admin_client.get(
        url, {"table_filter": "blocked eq 'All' and displayName eq 'nobody at all'", "integration_table_filter": ""}
    )
    counts = [int(n) for n in re.findall(r'class="match-count">(\d+)<', response.content.decode())]
    assert counts[0] == 0

    response = admin_client.get(url, {"table_filter": "blockd eq ' '", "integration_table_filter": "statecode eq"})
    html = response.content.decode()
    assert "has no field &#x27;blockd&#x27;" in html and "is not a valid OData filter" in html


def test_a_value_map_to_values_that_are_not_options_is_refused(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(
        data,
        bc_field="displayName",
        dataverse_field="address1_shippingmethodcode",
        direction="to_dataverse",
        value_map='{"DHL": 2, "Pigeon": 9}',
    )
    _submit_refused(admin_client, url, data, "value map: 9 is not an option of address1_shippingmethodcode (1 Airborne")


def test_a_connection_that_cannot_be_read_is_reported_not_silently_passed(
    admin_client, change_form, sandbox_connections
):
    bc, _ = sandbox_connections
    bc.set_client_secret("not-the-secret")
    bc.save()
    url, data = change_form.data(admin_client, "CUSTOMER")
    response = admin_client.post(url, data, follow=True)
    html = response.content.decode()
    assert response.redirect_chain  # Dataverse was checked and nothing is wrong, so it saves...
    assert "Business Central metadata for customers could not be read" in html  # ...and says what was not checked
