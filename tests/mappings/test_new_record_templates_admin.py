"""Templates for new records in the table mapping admin (inline) and in export/import: validated as the mapping's
filters and values for new records are; nothing invalid is saved."""

import pytest

from mappings.importing import ImportRefused
from mappings.models import NewRecordTemplate, TableMapping
from mappings.services import configuration_export, configuration_import, configuration_snapshot

pytestmark = pytest.mark.django_db


def test_a_template_is_added_inline_in_the_mapping_admin(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_template(data, name="Foreign", source_filter="country ne 'US'", values='{"paymenttermscode": 2}')
    response = admin_client.post(url, data, follow=True)
    assert response.redirect_chain, response.content.decode()[:2000]
    (template,) = NewRecordTemplate.objects.filter(table_mapping__name="CUSTOMER")
    assert (template.name, template.source_filter, template.values) == (
        "Foreign",
        "country ne 'US'",
        {"paymenttermscode": 2},
    )


def test_a_template_filter_that_is_not_valid_odata_is_refused_and_nothing_is_saved(admin_client, change_form):
    url, data = change_form.data(admin_client, "CUSTOMER")
    change_form.add_template(data, name="Broken", source_filter="country eq 'NL' and")
    before = configuration_snapshot()
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "Table filter is not a valid OData filter" in response.content.decode()
    assert configuration_snapshot() == before
    assert not NewRecordTemplate.objects.exists()


def test_templates_are_exported_and_imported_in_order_and_a_bad_one_refuses_the_import():
    customer = TableMapping.objects.get(name="CUSTOMER")
    NewRecordTemplate.objects.create(
        table_mapping=customer, position=20, target="dataverse", name="Others", values={"description": "b"}
    )
    NewRecordTemplate.objects.create(
        table_mapping=customer,
        position=10,
        target="dataverse",
        name="Domestic",
        source_filter="country eq 'US'",
        values={"description": "a"},
    )
    document = configuration_export()
    (exported,) = [m for m in document["table_mappings"] if m["name"] == "CUSTOMER"]
    assert [t["name"] for t in exported["new_record_templates"]] == ["Domestic", "Others"]

    NewRecordTemplate.objects.all().delete()
    configuration_import(data=document)
    assert list(
        NewRecordTemplate.objects.filter(table_mapping=customer).order_by("position").values_list("name", flat=True)
    ) == ["Domestic", "Others"]

    exported["new_record_templates"][0]["source_filter"] = "country eq"
    before = configuration_snapshot()
    with pytest.raises(ImportRefused) as refused:
        configuration_import(data=document)
    assert "not a valid OData filter" in str(refused.value.problems)
    assert configuration_snapshot() == before
