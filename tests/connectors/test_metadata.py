"""Table metadata for validating mappings: columns, types, max lengths, option values; cached per client."""

import pytest

from connectors.clients import open_client
from connectors.types import ConnectorError, ErrorKind

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def test_bc_customer_columns_come_from_the_metadata_document(bc_connection):
    with open_client(bc_connection) as client:
        info = client.table_info("customers")
        again = client.table_info("customers")
        tables = client.tables()

    assert again is info and client.request_counts["metadata"] == 1  # cached per client
    assert info.primary_key == "id" and info.primary_name == "displayName"
    assert info.modified_on == "lastModifiedDateTime"
    assert info.columns["displayName"].type == "string" and info.columns["displayName"].max_length == 100
    assert info.columns["number"].max_length == 20
    assert info.columns["blocked"].type == "enum"
    assert {" ", "Ship", "Invoice", "All"} <= set(info.columns["blocked"].options)
    assert info.columns["creditLimit"].type == "decimal"
    assert info.columns["id"].read_only and info.columns["lastModifiedDateTime"].read_only
    assert {"customers", "vendors", "currencies"} <= set(tables)


def test_dataverse_account_columns_come_from_entity_definitions(dataverse_connection):
    with open_client(dataverse_connection) as client:
        info = client.table_info("accounts")
        client.table_info("accounts")
        tables = client.tables()
    metadata_requests = client.request_counts["metadata"]

    assert info.primary_key == "accountid" and info.primary_name == "name"
    name = info.columns["name"]
    assert name.type == "string" and name.max_length == 160 and name.required
    assert info.columns["description"].type == "memo" and info.columns["description"].max_length == 2000
    assert info.columns["customertypecode"].type == "choice"
    assert info.columns["customertypecode"].options[3] == "Customer"
    assert info.columns["customertypecode"].options[11] == "Vendor"
    assert info.columns["statecode"].options == {0: "Active", 1: "Inactive"}
    assert info.columns["parentaccountid"].type == "lookup"
    assert info.columns["parentaccountid"].lookup_targets == ("accounts",)
    assert info.columns["creditlimit"].type == "money"
    assert "accounts" in tables and "contacts" in tables
    assert metadata_requests == client.request_counts["metadata"] and metadata_requests <= 8


def test_an_unknown_table_is_not_found(bc_connection, dataverse_connection):
    with open_client(bc_connection) as bc, open_client(dataverse_connection) as dataverse:
        for client in (bc, dataverse):
            with pytest.raises(ConnectorError) as caught:
                client.table_info("nosuchtables")
            assert caught.value.kind == ErrorKind.NOT_FOUND


def test_dataverse_keeps_attributes_of_other_attributes_as_read_only_columns(dataverse_connection):
    with open_client(dataverse_connection) as client:
        contact = client.table_info("contacts")
    assert contact.columns["parentcustomeridtype"].read_only
    assert contact.columns["parentcustomerid"].lookup_targets == ("accounts", "contacts")
    assert contact.columns["lastname"].required and contact.columns["lastname"].max_length == 50
