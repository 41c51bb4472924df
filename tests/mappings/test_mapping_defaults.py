"""The five default mappings exist on a new installation, exactly as the seed's table and domain.md 2.1/2.2 say."""

import pytest

from mappings.choices import Direction
from mappings.defaults import DEFAULT_NAMES, create_default_mappings
from mappings.models import FieldMapping, TableMapping

pytestmark = pytest.mark.django_db


def _fields(name):
    return {(fm.bc_field, fm.dataverse_field): fm for fm in FieldMapping.objects.filter(table_mapping__name=name)}


def test_a_new_installation_has_the_five_defaults_with_the_seeds_directions_and_filters():
    # The data migration ran when the test database was created: nothing to call here.
    mappings = {tm.name: tm for tm in TableMapping.objects.all()}
    assert sorted(mappings) == sorted(["SALESPEOPLE", "CUSTOMER", "VENDOR", "CONTACT", "CURRENCY"])
    expected = {
        "SALESPEOPLE": ("salespeoplePurchasers", "systemusers", Direction.FROM_DATAVERSE, ""),
        "CUSTOMER": ("customers", "accounts", Direction.BIDIRECTIONAL, "blocked eq ' '"),
        "VENDOR": ("vendors", "accounts", Direction.BIDIRECTIONAL, "blocked eq ' '"),
        "CONTACT": ("contacts", "contacts", Direction.BIDIRECTIONAL, "type eq 'Person' and companyNumber ne ''"),
        "CURRENCY": ("currencies", "transactioncurrencies", Direction.TO_DATAVERSE, ""),
    }
    for name, (bc_table, dataverse_table, direction, table_filter) in expected.items():
        tm = mappings[name]
        assert (tm.bc_entity_set, tm.dataverse_entity_set, tm.direction, tm.table_filter) == (
            bc_table,
            dataverse_table,
            direction,
            table_filter,
        ), name
        assert tm.is_default and tm.sync_only_coupled, name
        assert tm.update_conflict_resolution == "" and tm.deletion_conflict_resolution == "", name
        assert tm.dataverse_primary_key and tm.bc_name_field and tm.dataverse_name_field, name
    assert mappings["SALESPEOPLE"].integration_table_filter == (
        "isdisabled eq false and islicensed eq true and isintegrationuser eq false"
    )
    assert mappings["CUSTOMER"].integration_table_filter == "statecode eq 0 and customertypecode eq 3"
    assert mappings["VENDOR"].integration_table_filter == "statecode eq 0 and customertypecode eq 11"
    assert mappings["CUSTOMER"].dataverse_new_record_values == {"customertypecode": 3}
    assert mappings["VENDOR"].dataverse_new_record_values == {"customertypecode": 11}
    assert "statecode eq 0" in mappings["CONTACT"].integration_table_filter


def test_dependencies_put_salespeople_and_currency_before_customer_and_vendor_before_contact():
    deps = {tm.name: sorted(tm.dependencies.values_list("name", flat=True)) for tm in TableMapping.objects.all()}
    assert deps == {
        "SALESPEOPLE": [],
        "CURRENCY": [],
        "CUSTOMER": ["CURRENCY", "SALESPEOPLE"],
        "VENDOR": ["CURRENCY", "SALESPEOPLE"],
        "CONTACT": ["CUSTOMER", "VENDOR"],
    }


def test_default_field_mappings_use_api_names_with_lookups_and_match_fields():
    customer = _fields("CUSTOMER")
    assert customer[("displayName", "name")].direction == Direction.BIDIRECTIONAL
    currency_lookup = customer[("currencyCode", "transactioncurrencyid")]
    assert currency_lookup.lookup_mapping.name == "CURRENCY"
    owner = customer[("salespersonCode", "ownerid")]
    assert (owner.lookup_mapping.name, owner.not_null, owner.direction) == (
        "SALESPEOPLE",
        True,
        Direction.TO_DATAVERSE,
    )
    assert customer[("creditLimit", "creditlimit")].direction == Direction.TO_DATAVERSE
    assert ("creditLimit", "creditlimit") not in _fields("VENDOR")
    assert _fields("VENDOR")[("currencyCode", "transactioncurrencyid")].lookup_mapping.name == "CURRENCY"

    currency = _fields("CURRENCY")
    assert set(currency) == {("code", "isocurrencycode"), ("symbol", "currencysymbol"), ("displayName", "currencyname")}
    assert currency[("code", "isocurrencycode")].use_for_matching
    assert all(fm.direction == Direction.TO_DATAVERSE for fm in currency.values())

    salespeople = _fields("SALESPEOPLE")
    assert set(salespeople) == {
        ("email", "internalemailaddress"),
        ("displayName", "fullname"),
        ("phoneNo", "mobilephone"),
    }
    assert all(fm.direction == Direction.FROM_DATAVERSE for fm in salespeople.values())
    assert salespeople[("email", "internalemailaddress")].use_for_matching

    contact = _fields("CONTACT")
    person = contact[("type", "")]
    assert (person.constant_value, person.direction) == ("Person", Direction.FROM_DATAVERSE)


def test_create_default_mappings_is_idempotent_and_leaves_edited_mappings_alone():
    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.table_filter = "blocked eq 'All'"
    customer.save()
    field_count = FieldMapping.objects.count()
    TableMapping.objects.filter(name="CONTACT").delete()

    result = create_default_mappings()
    create_default_mappings()

    assert [tm.name for tm in result] == DEFAULT_NAMES
    assert TableMapping.objects.count() == 5
    customer.refresh_from_db()
    assert customer.table_filter == "blocked eq 'All'"
    contact = TableMapping.objects.get(name="CONTACT")
    assert sorted(contact.dependencies.values_list("name", flat=True)) == ["CUSTOMER", "VENDOR"]
    assert FieldMapping.objects.count() == field_count
