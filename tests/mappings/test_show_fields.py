"""'Show their fields' on the table mapping form: the page comes back with the tables' fields offered from both
systems' metadata and everything the user typed kept (company, filters, field rows), and nothing is saved. It used
to reload the page with a few of the values in the address: the company became "---------", the typed filter was
gone, and on an existing mapping every unsaved edit was lost."""

import pytest
from django.urls import reverse

from mappings.models import FieldMapping, TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def offered(response, list_id: str) -> list[str]:
    return [name for name, _hint in response.context["mapping_datalists"][list_id]]


def test_show_fields_on_the_add_form_keeps_the_company_and_what_was_typed(admin_client, sandbox_connections):
    bc_connection, _ = sandbox_connections
    before = TableMapping.objects.count()
    typed = {
        "name": "ITEM",
        "company": str(bc_connection.pk),
        "bc_entity_set": "items",
        "dataverse_entity_set": "products",
        "table_filter": "blocked eq false",
        "direction": "to_dataverse",
        "field_mappings-TOTAL_FORMS": "1",
        "field_mappings-INITIAL_FORMS": "0",
        "field_mappings-0-position": "1",
        "field_mappings-0-bc_field": "number",
        "field_mappings-0-dataverse_field": "productnumber",
        "new_record_templates-TOTAL_FORMS": "0",
        "new_record_templates-INITIAL_FORMS": "0",
        "_show_fields": "1",
    }
    response = admin_client.post(reverse("admin:mappings_tablemapping_add"), typed)

    assert response.status_code == 200
    assert TableMapping.objects.count() == before  # nothing saved
    form = response.context["adminform"].form
    assert form["company"].value() == str(bc_connection.pk)
    assert form["table_filter"].value() == "blocked eq false"
    assert form["name"].value() == "ITEM" and form["direction"].value() == "to_dataverse"
    html = response.content.decode()
    assert f'<option value="{bc_connection.pk}" selected>' in html
    assert 'value="productnumber"' in html  # the typed field row
    # The tables' fields, read from both systems' metadata.
    assert "unitPrice" in offered(response, "bc-fields") and "productnumber" in offered(response, "dataverse-fields")
    # A half-filled form is no mistake yet: no errors shown.
    assert "errornote" not in html and "errorlist" not in html


def test_show_fields_on_a_mapping_keeps_unsaved_edits_and_saves_nothing(admin_client, sandbox_connections, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    customer = TableMapping.objects.get(name="CUSTOMER")
    saved_filter = customer.table_filter
    phone = change_form.field_key(data, "phoneNumber", "telephone1", "enabled")
    data.pop(phone, None)  # unchecked: the row disabled, not saved yet
    data["table_filter"] = "blocked eq ' ' and city eq 'Atlanta'"
    data["dataverse_entity_set"] = "contacts"
    data["_show_fields"] = "1"
    response = admin_client.post(url, data)

    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.table_filter == saved_filter and customer.dataverse_entity_set == "accounts"
    assert FieldMapping.objects.get(table_mapping=customer, bc_field="phoneNumber").enabled
    form = response.context["adminform"].form
    assert form["table_filter"].value() == "blocked eq ' ' and city eq 'Atlanta'"
    rows = response.context["inline_admin_formsets"][0].formset.forms
    (phone_row,) = [row for row in rows if row["bc_field"].value() == "phoneNumber"]
    assert phone_row["enabled"].value() is False
    # The fields of the table as typed (contacts), not as saved (accounts).
    assert "lastname" in offered(response, "dataverse-fields")
    assert "accountnumber" not in offered(response, "dataverse-fields")


def test_saving_after_show_fields_still_saves(admin_client, sandbox_connections, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    data["table_filter"] = "blocked eq ' ' and city eq 'Atlanta'"
    admin_client.post(url, {**data, "_show_fields": "1"})
    response = admin_client.post(url, {**data, "_save": "Save"})
    assert response.status_code == 302
    assert TableMapping.objects.get(name="CUSTOMER").table_filter == "blocked eq ' ' and city eq 'Atlanta'"
