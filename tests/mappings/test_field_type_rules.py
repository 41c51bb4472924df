"""A field mapping between fields whose types do not fit is refused when saved, with the reason, against the
connections' metadata (the sandbox over in-process HTTP); nothing is saved."""

import re

import pytest

from mappings.services import configuration_snapshot

pytestmark = [pytest.mark.django_db(databases=["default", "sandbox"]), pytest.mark.usefixtures("sandbox_connections")]


def _errors(response) -> str:
    return " ".join(re.findall(r"errorlist[^>]*>(.*?)</ul>", response.content.decode(), re.S))


@pytest.mark.parametrize(
    ("bc_field", "dataverse_field", "direction", "message"),
    [
        (
            "creditLimit",
            "creditonhold",
            "to_dataverse",
            "creditLimit (decimal) cannot be written to the boolean creditonhold: it holds a number, not a yes/no",
        ),
        (
            "website",
            "numberofemployees",
            "to_dataverse",
            "website (string) cannot be written to the integer numberofemployees: it holds text, not a number",
        ),
        (
            "taxLiable",
            "revenue",
            "from_dataverse",
            "revenue (money) cannot be written to the boolean taxLiable: it holds a number, not a yes/no value",
        ),
    ],
)
def test_fields_of_incompatible_types_are_refused(
    admin_client, change_form, bc_field, dataverse_field, direction, message
):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(data, bc_field=bc_field, dataverse_field=dataverse_field, direction=direction)
    before = configuration_snapshot()
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert message in _errors(response)
    assert configuration_snapshot() == before


def test_anything_may_be_written_as_text(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(data, bc_field="creditLimit", dataverse_field="description", direction="to_dataverse")
    response = admin_client.post(url, data)
    assert response.status_code == 302, _errors(response)


def test_adding_missing_options_needs_a_dataverse_choice(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(
        data, bc_field="city", dataverse_field="address1_city", direction="to_dataverse", add_missing_options="on"
    )
    before = configuration_snapshot()
    response = admin_client.post(url, data)
    assert "adding missing options needs a Dataverse choice column; address1_city is a string column." in _errors(
        response
    )
    assert configuration_snapshot() == before


def test_a_malformed_api_route_is_refused_as_an_unknown_table(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["bc_entity_set"] = "contoso/customers"
    response = admin_client.post(url, data)
    assert "is not an entity set: name a standard one (customers) or a custom API page" in _errors(response)


def test_adding_codes_from_dataverse_needs_an_existing_code_table(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_row(
        data,
        bc_field="state",
        dataverse_field="address1_shippingmethodcode",
        direction="from_dataverse",
        value_map='{"CA": 1}',
        add_missing_options="on",
    )
    before = configuration_snapshot()
    response = admin_client.post(url, data)
    assert "From Dataverse, adding missing options needs the Business Central code table" in _errors(response)
    data[next(k for k in data if k.endswith("-add_missing_options"))] = "on"
    data[
        next(k for k in data if k.endswith("-add_missing_options")).replace("add_missing_options", "bc_code_table")
    ] = "shippingAgents"
    response = admin_client.post(url, data)
    assert "Business Central has no code table &#x27;shippingAgents&#x27; with a code field." in _errors(response)
    assert configuration_snapshot() == before
