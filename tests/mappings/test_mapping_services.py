"""Reset to defaults, export and import: the differences shown first, applied atomically, couplings kept."""

import json

import pytest
from django.contrib.admin.models import LogEntry

from mappings.defaults import default_mapping
from mappings.models import FieldMapping, MappingChange, TableMapping
from mappings.serialization import table_mapping_to_dict
from mappings.services import (
    ImportRefused,
    configuration_export,
    configuration_import,
    configuration_snapshot,
    table_mapping_reset_to_defaults,
)

pytestmark = pytest.mark.django_db


def _edit_customer():
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.table_filter = "blocked eq 'All'"
    customer.sync_only_coupled = False
    customer.save()
    customer.dependencies.remove(TableMapping.objects.get(name="SALESPEOPLE"))
    customer.field_mappings.filter(bc_field="email").update(enabled=False)
    customer.field_mappings.filter(bc_field="city").delete()
    FieldMapping.objects.create(table_mapping=customer, bc_field="number", dataverse_field="accountnumber")
    return customer


def test_reset_shows_the_changes_first_then_restores_the_default_in_place(admin_user):
    customer = _edit_customer()
    row_id = customer.pk

    preview = table_mapping_reset_to_defaults(names=["CUSTOMER"], dry_run=True)
    assert [d.action for d in preview] == ["update"]
    text = str(preview[0])
    assert "table_filter: \"blocked eq 'All'\" -> \"blocked eq ' '\"" in text
    assert "dependencies: ['CURRENCY'] -> ['CURRENCY', 'SALESPEOPLE']" in text
    assert "add field mapping" in text and "city" in text
    assert "remove field mapping" in text and "accountnumber" in text
    assert "enabled False -> True" in text
    assert TableMapping.objects.get(name="CUSTOMER").table_filter == "blocked eq 'All'"  # nothing applied yet

    table_mapping_reset_to_defaults(names=["CUSTOMER"], user=admin_user)

    customer = TableMapping.objects.get(name="CUSTOMER")
    assert customer.pk == row_id  # reset in place: couplings keep pointing at this row
    assert table_mapping_to_dict(customer) == default_mapping("CUSTOMER")
    change = MappingChange.objects.get()
    assert change.user == admin_user and change.mapping_names == "CUSTOMER" and "table_filter" in change.summary
    assert LogEntry.objects.filter(object_id=str(row_id), change_message__contains="Reset to defaults").exists()


def test_reset_of_all_recreates_a_deleted_default_and_changes_nothing_when_already_default():
    TableMapping.objects.filter(name="CONTACT").delete()
    diffs = table_mapping_reset_to_defaults()
    assert {d.name: d.action for d in diffs}["CONTACT"] == "create"
    assert table_mapping_to_dict(TableMapping.objects.get(name="CONTACT")) == default_mapping("CONTACT")
    again = table_mapping_reset_to_defaults()
    assert all(d.action == "unchanged" for d in again)
    assert MappingChange.objects.count() == 1


def test_reset_refuses_a_mapping_that_is_not_a_default():
    with pytest.raises(ValueError, match="ITEM is not a default mapping"):
        table_mapping_reset_to_defaults(names=["ITEM"])


def test_export_is_versioned_json_with_every_mapping():
    document = json.loads(json.dumps(configuration_export()))
    assert document["format"] == "syncadmin.mappings" and document["version"] == 1
    assert sorted(m["name"] for m in document["table_mappings"]) == [
        "CONTACT",
        "CURRENCY",
        "CUSTOMER",
        "SALESPEOPLE",
        "VENDOR",
    ]


def test_import_refuses_an_inconsistent_file_with_every_reason_and_changes_nothing():
    document = configuration_export()
    customer = next(m for m in document["table_mappings"] if m["name"] == "CUSTOMER")
    customer["dependencies"].append("ITEM")
    customer["direction"] = "sideways"
    customer["field_mappings"][0]["enabled"] = "yes"
    before = configuration_snapshot()
    with pytest.raises(ImportRefused) as refused:
        configuration_import(data=document)
    reasons = "\n".join(refused.value.problems)
    assert "direction 'sideways' is not one of" in reasons
    assert "enabled must be true or false" in reasons
    assert configuration_snapshot() == before
    assert MappingChange.objects.count() == 0


def test_an_import_that_fails_halfway_leaves_everything_as_it_was(monkeypatch):
    document = configuration_export()
    for mapping in document["table_mappings"]:
        mapping["table_filter"] = ""
    document["table_mappings"] = [m for m in document["table_mappings"] if m["name"] != "CONTACT"]
    before = configuration_snapshot()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")  # after every mapping was written, before the change is recorded

    monkeypatch.setattr("mappings.services._record", fail)
    with pytest.raises(RuntimeError):
        configuration_import(data=document)
    assert configuration_snapshot() == before
