"""The table mapping list, the reset action, export/import (admin and commands), and the try-it pages."""

import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from mappings.defaults import create_default_mappings, default_mapping
from mappings.models import FieldMapping, MappingChange, TableMapping
from mappings.serialization import table_mapping_to_dict
from mappings.services import configuration_export, configuration_snapshot

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:mappings_tablemapping_changelist"


def _custom_configuration():
    """Edit a default and add a user-defined mapping, so a round trip has something to reproduce."""
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.table_filter = "blocked eq ' ' and city eq 'Seattle'"
    customer.update_conflict_resolution = "send_to_dataverse"
    customer.save()
    customer.field_mappings.filter(bc_field="city").update(
        transformation=[{"rule": "trim"}, {"rule": "uppercase"}], enabled=False
    )
    item = TableMapping.objects.create(
        name="ITEM",
        bc_entity_set="items",
        dataverse_entity_set="products",
        dataverse_primary_key="productid",
        direction="to_dataverse",
        dataverse_new_record_values={"productstructure": 1},
    )
    item.dependencies.set([TableMapping.objects.get(name="CURRENCY")])
    FieldMapping.objects.create(
        table_mapping=item, bc_field="number", dataverse_field="productnumber", direction="to_dataverse", position=1
    )
    FieldMapping.objects.create(
        table_mapping=item,
        bc_field="unitPrice",
        dataverse_field="price",
        direction="to_dataverse",
        transformation=[{"rule": "round", "precision": 0.01}],
        position=2,
    )
    FieldMapping.objects.create(
        table_mapping=item,
        bc_field="currencyCode",
        dataverse_field="transactioncurrencyid",
        direction="to_dataverse",
        lookup_mapping=TableMapping.objects.get(name="CURRENCY"),
        position=3,
    )
    # Team ownership: no SALESPEOPLE, and no owner from the salesperson.
    customer.dependencies.set([TableMapping.objects.get(name="CURRENCY")])
    customer.field_mappings.filter(dataverse_field="ownerid").delete()
    TableMapping.objects.filter(name="SALESPEOPLE").delete()
    vendor = TableMapping.objects.get(name="VENDOR")
    vendor.dependencies.set([TableMapping.objects.get(name="CURRENCY")])


def test_the_list_shows_directions_filters_dependencies_and_counts(admin_client):
    response = admin_client.get(reverse(CHANGELIST))
    html = response.content.decode()
    assert response.status_code == 200
    for text in (
        "From Dataverse",
        "statecode eq 0 and customertypecode eq 11",
        "CURRENCY, SALESPEOPLE",
        "CUSTOMER, VENDOR",
    ):
        assert text in html
    for column in ("last sync", "errors", "skipped"):
        assert f">{column.capitalize()}<" in html or f">{column}<" in html.lower()


def test_the_reset_action_shows_the_changes_asks_and_then_restores_the_default(admin_client):
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.direction = "to_dataverse"
    customer.integration_table_filter = "statecode eq 0"
    customer.save()
    customer.field_mappings.filter(bc_field="email").update(direction="to_dataverse", enabled=False)
    customer.field_mappings.filter(bc_field="phoneNumber").delete()
    row_id = customer.pk

    response = admin_client.post(
        reverse(CHANGELIST), {"action": "reset_to_defaults", "_selected_action": [customer.pk]}, follow=True
    )
    html = response.content.decode()
    assert "direction: &#x27;to_dataverse&#x27; -&gt; &#x27;bidirectional&#x27;" in html
    assert "add field mapping" in html and "phoneNumber" in html
    assert "Yes, reset them" in html
    assert TableMapping.objects.get(name="CUSTOMER").direction == "to_dataverse"  # asked, not done

    response = admin_client.post(
        reverse("admin:mappings_tablemapping_reset"), {"names": "CUSTOMER", "confirm": "yes"}, follow=True
    )
    assert "Reset to the defaults: CUSTOMER. Couplings were kept." in response.content.decode()
    customer = TableMapping.objects.get(name="CUSTOMER")
    assert customer.pk == row_id
    assert table_mapping_to_dict(customer) == default_mapping("CUSTOMER")
    assert MappingChange.objects.get().action == "reset"


def test_reset_of_all_from_the_list_and_refusal_for_a_user_defined_mapping(admin_client):
    TableMapping.objects.filter(name="VENDOR").update(table_filter="")
    response = admin_client.get(reverse("admin:mappings_tablemapping_reset"))
    assert "table_filter: (blank) -&gt; &quot;blocked eq &#x27; &#x27;&quot;" in response.content.decode()
    admin_client.post(reverse("admin:mappings_tablemapping_reset"), {"names": "", "confirm": "yes"})
    assert TableMapping.objects.get(name="VENDOR").table_filter == "blocked eq ' '"

    item = TableMapping.objects.create(name="ITEM", bc_entity_set="items", dataverse_entity_set="products")
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "reset_to_defaults", "_selected_action": [item.pk]}, follow=True
    )
    assert "Only default mappings can be reset; not: ITEM." in response.content.decode()


def _fresh_install():
    """What a new installation has: the defaults only (the data migration's result)."""
    FieldMapping.objects.all().delete()  # first: lookups protect the mappings they go through
    TableMapping.objects.all().delete()
    create_default_mappings()


def test_export_then_import_through_the_admin_on_a_fresh_database_reproduces_the_configuration(admin_client):
    _custom_configuration()
    exported = configuration_snapshot()
    response = admin_client.get(reverse("admin:mappings_tablemapping_export"))
    assert response["Content-Disposition"].startswith('attachment; filename="syncadmin-mappings-')
    document = response.content

    _fresh_install()
    assert configuration_snapshot() != exported
    upload = io.BytesIO(document)
    upload.name = "mappings.json"
    response = admin_client.post(
        reverse("admin:mappings_tablemapping_import"), {"file": upload, "delete_missing": "on"}
    )
    html = response.content.decode()
    assert "ITEM</td>\n      <td>create" in html
    assert "SALESPEOPLE</td>\n      <td>delete" in html
    assert "Yes, import" in html
    assert "ITEM" not in configuration_snapshot()  # shown, not applied

    content = response.context["content"]
    response = admin_client.post(
        reverse("admin:mappings_tablemapping_import"),
        {"content": content, "delete_missing": "on", "confirm": "yes"},
        follow=True,
    )
    assert "Imported:" in response.content.decode()
    assert configuration_snapshot() == exported
    assert MappingChange.objects.filter(action="import").count() == 1


def test_the_admin_refuses_a_malformed_or_inconsistent_file_and_changes_nothing(admin_client):
    before = configuration_snapshot()
    url = reverse("admin:mappings_tablemapping_import")
    upload = io.BytesIO(b"{not json")
    upload.name = "broken.json"
    response = admin_client.post(url, {"file": upload})
    assert "The file is not valid JSON" in response.content.decode()

    document = configuration_export()
    document["table_mappings"][0]["dependencies"] = ["NOWHERE"]
    document["version"] = 7
    upload = io.BytesIO(json.dumps(document).encode())
    upload.name = "bad.json"
    response = admin_client.post(url, {"file": upload, "delete_missing": "on"})
    html = response.content.decode()
    assert "The file was not imported. Nothing was changed." in html
    assert "version 7 is not supported (supported: 1)." in html
    assert configuration_snapshot() == before
    assert not MappingChange.objects.exists()


def test_the_commands_round_trip_the_configuration_on_a_fresh_database(tmp_path):
    _custom_configuration()
    exported = configuration_snapshot()
    path = tmp_path / "mappings.json"
    call_command("export_mappings", output=str(path))

    _fresh_install()
    out = io.StringIO()
    call_command("import_mappings", str(path), dry_run=True, stdout=out, stderr=io.StringIO())
    assert "ITEM: create" in out.getvalue() and "Nothing was changed" in out.getvalue()
    assert "ITEM" not in configuration_snapshot()

    out = io.StringIO()
    call_command("import_mappings", str(path), stdout=out, stderr=io.StringIO())
    assert "Imported:" in out.getvalue()
    assert configuration_snapshot() == exported
    assert MappingChange.objects.get().actor == "manage.py import_mappings"


def test_the_import_command_refuses_an_inconsistent_file_with_the_reason(tmp_path):
    document = configuration_export()
    contact = next(m for m in document["table_mappings"] if m["name"] == "CONTACT")
    salespeople = next(m for m in document["table_mappings"] if m["name"] == "SALESPEOPLE")
    salespeople["dependencies"] = ["CONTACT"]
    contact["field_mappings"][0]["lookup_mapping"] = "ITEM"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    before = configuration_snapshot()
    with pytest.raises(CommandError) as refused:
        call_command("import_mappings", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    message = str(refused.value)
    assert "CONTACT: field mapping 1: lookup mapping 'ITEM' is not in the file." in message
    (tmp_path / "broken.json").write_text('{"format": ')
    with pytest.raises(CommandError, match="is not valid JSON"):
        call_command("import_mappings", str(tmp_path / "broken.json"), stdout=io.StringIO())
    salespeople["dependencies"] = ["CONTACT"]
    contact["field_mappings"][0]["lookup_mapping"] = None
    path.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="Dependency cycle: CONTACT -> CUSTOMER -> SALESPEOPLE -> CONTACT"):
        call_command("import_mappings", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    assert configuration_snapshot() == before


def test_the_transformation_page_shows_the_result_of_a_typed_value(admin_client):
    url = reverse("admin:mappings_tablemapping_transformation_preview")
    rules = json.dumps([{"rule": "trim"}, {"rule": "substring", "start": 1, "length": 10}, {"rule": "uppercase"}])
    response = admin_client.get(url, {"rules": rules, "value": "  cash payment  "})
    assert "&#x27;CASH PAYME&#x27;" in response.content.decode()
    response = admin_client.get(url, {"rules": '[{"rule": "round", "precision": 0}]', "value": "1"})
    assert "precision must be a positive number" in response.content.decode()
    city = FieldMapping.objects.get(table_mapping__name="CUSTOMER", bc_field="city")
    city.transformation = [{"rule": "title_case"}]
    city.save()
    response = admin_client.get(url, {"field_mapping": city.pk})
    assert "title_case" in response.content.decode()


def test_pages_need_a_login(client):
    for name in ("export", "import", "reset", "transformation_preview"):
        response = client.get(reverse(f"admin:mappings_tablemapping_{name}"))
        assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_list_offers_export_import_and_reset_buttons(admin_client):
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    for name in ("export", "import", "reset"):
        assert reverse(f"admin:mappings_tablemapping_{name}") in html


def test_a_user_defined_mapping_is_added_through_the_admin_with_its_field_mappings(admin_client):
    currency = TableMapping.objects.get(name="CURRENCY")
    prefix = "field_mappings"
    data = {
        "name": "ITEM",
        "bc_entity_set": "items",
        "dataverse_entity_set": "products",
        "dataverse_primary_key": "productid",
        "bc_name_field": "displayName",
        "dataverse_name_field": "name",
        "direction": "to_dataverse",
        "table_filter": "blocked eq false",
        "integration_table_filter": "",
        "sync_only_coupled": "on",
        "dependencies": [str(currency.pk)],
        "update_conflict_resolution": "",
        "deletion_conflict_resolution": "",
        "deletions_to_dataverse": "",
        "deletions_from_dataverse": "",
        "deletion_safety_percent": "5",
        "bc_new_record_values": "{}",
        "dataverse_new_record_values": '{"productstructure": 1}',
        f"{prefix}-TOTAL_FORMS": "2",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
        # The "values for new records, by filter" inline, left empty.
        "new_record_templates-TOTAL_FORMS": "0",
        "new_record_templates-INITIAL_FORMS": "0",
    }
    rows = [
        {"bc_field": "number", "dataverse_field": "productnumber"},
        {
            "bc_field": "unitPrice",
            "dataverse_field": "price",
            "transformation": '[{"rule": "round", "precision": 0.01}]',
        },
    ]
    for index, row in enumerate(rows):
        values = {"position": str(index + 1), "direction": "to_dataverse", "enabled": "on", "transformation": "[]"}
        values.update({"value_map": "{}", "match_priority": "0", "update_conflict_resolution": "", **row})
        data.update({f"{prefix}-{index}-{key}": value for key, value in values.items()})
    response = admin_client.post(reverse("admin:mappings_tablemapping_add"), data, follow=True)
    assert response.redirect_chain, response.content.decode()[-3000:]
    item = TableMapping.objects.get(name="ITEM")
    assert not item.is_default
    assert [fm.dataverse_field for fm in item.field_mappings.all()] == ["productnumber", "price"]
    assert list(item.dependencies.values_list("name", flat=True)) == ["CURRENCY"]


def test_resets_and_imports_are_listed_under_mapping_changes(admin_client, admin_user):
    TableMapping.objects.filter(name="VENDOR").update(table_filter="")
    admin_client.post(reverse("admin:mappings_tablemapping_reset"), {"names": "VENDOR", "confirm": "yes"})
    html = admin_client.get(reverse("admin:mappings_mappingchange_changelist")).content.decode()
    assert "Reset to defaults" in html and "VENDOR" in html and admin_user.username in html
    change = MappingChange.objects.get()
    detail = admin_client.get(reverse("admin:mappings_mappingchange_change", args=[change.pk])).content.decode()
    assert "table_filter: (blank) -&gt; &quot;blocked eq &#x27; &#x27;&quot;" in detail


def test_the_test_filter_page_says_why_it_cannot_count_without_connections(admin_client):
    customer = TableMapping.objects.get(name="CUSTOMER")
    html = admin_client.get(reverse("admin:mappings_tablemapping_test_filter", args=[customer.pk])).content.decode()
    assert "Not counted. No enabled Business Central connection: add one under Connections." in html
    assert "Not counted. No enabled Dataverse connection: add one under Connections." in html


def test_the_last_sync_errors_and_skipped_columns_link_to_the_filtered_lists(admin_client):
    import uuid

    from django.utils import timezone

    from coupling.models import Coupling
    from jobs.models import SyncError, SyncJob

    customer = TableMapping.objects.get(name="CUSTOMER")
    vendor = TableMapping.objects.get(name="VENDOR")
    Coupling.objects.create(
        table_mapping=customer, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4(), skipped=True, bc_name="Skipped Co"
    )
    Coupling.objects.create(
        table_mapping=vendor, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4(), skipped=True, bc_name="Vendor Co"
    )
    job = SyncJob.objects.create(
        table_mapping=customer, direction="to_dataverse", status="partly_failed", finished_at=timezone.now()
    )
    for _ in range(2):
        SyncError.objects.create(
            job=job, table_mapping=customer, direction="to_dataverse", error_class="validation", message="Too long"
        )

    response = admin_client.get(reverse(CHANGELIST))
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*>CUSTOMER<(?:(?!</tr>).)*</tr>", response.content.decode(), re.S).group(0)
    links = dict((text, href.replace("&amp;", "&")) for href, text in re.findall(r'<a href="([^"]+)">([^<]+)</a>', row))
    assert "2" in links and "1" in links  # two errors, one skipped coupling
    vendor_job = SyncJob.objects.create(table_mapping=vendor, direction="to_dataverse", status="failed")
    SyncError.objects.create(
        job=vendor_job, table_mapping=vendor, direction="to_dataverse", error_class="validation", message="Vendor issue"
    )
    errors_page = admin_client.get(links["2"])  # a lookup the list does not allow would redirect to ?e=1
    assert errors_page.status_code == 200
    assert "Too long" in errors_page.content.decode() and "Vendor issue" not in errors_page.content.decode()
    skipped_page = admin_client.get(links["1"])
    assert skipped_page.status_code == 200
    assert "Skipped Co" in skipped_page.content.decode() and "Vendor Co" not in skipped_page.content.decode()
    last_sync = [href for text, href in links.items() if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d", text)]
    assert last_sync and admin_client.get(last_sync[0]).status_code == 200
