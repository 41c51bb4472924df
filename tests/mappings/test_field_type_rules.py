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
