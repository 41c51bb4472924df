"""Dataverse $metadata, EntityDefinitions (names, attributes, lengths, option sets) and change tracking."""

import uuid
import xml.etree.ElementTree as ET  # noqa: S405
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from sandbox import testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def test_csdl_metadata_describes_tables_lookups_and_change_tracking(dv, seeded):
    root = ET.fromstring(dv.get("$metadata").text)  # noqa: S314 (our own emulator's answer)
    schema = next(root.iter(f"{EDM}Schema"))
    assert schema.get("Namespace") == "Microsoft.Dynamics.CRM" and schema.get("Alias") == "mscrm"
    account = next(e for e in root.iter(f"{EDM}EntityType") if e.get("Name") == "account")
    props = {p.get("Name"): p.get("Type") for p in account.iter(f"{EDM}Property")}
    assert props["_parentaccountid_value"] == "Edm.Guid" and "parentaccountid" not in props
    navs = {n.get("Name") for n in account.iter(f"{EDM}NavigationProperty")}
    assert {"parentaccountid", "transactioncurrencyid", "ownerid"} <= navs
    annotated = dv.get("$metadata", params={"annotations": "true"}).text
    assert "Org.OData.Capabilities.V1.ChangeTracking" in annotated


def test_entity_definitions_names(dv, seeded):
    body = dv.get(
        "EntityDefinitions",
        params={
            "$filter": "EntitySetName eq 'accounts'",
            "$select": "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute",
        },
    ).json()
    [row] = body["value"]
    assert (row["LogicalName"], row["PrimaryIdAttribute"], row["PrimaryNameAttribute"]) == (
        "account",
        "accountid",
        "name",
    )
    tracked = dv.get("EntityDefinitions", params={"$select": "SchemaName", "$filter": "ChangeTrackingEnabled eq true"})
    # accounts, contacts, systemusers, transactioncurrencies, cdm_companies, products, cr123_projects
    assert len(tracked.json()["value"]) == 7
    one = dv.get("EntityDefinitions(LogicalName='contact')").json()
    assert one["EntitySetName"] == "contacts" and one["PrimaryNameAttribute"] == "fullname"


def test_attributes_types_lengths_and_requirement(dv, seeded):
    attributes = dv.get(
        "EntityDefinitions(LogicalName='account')/Attributes",
        params={"$select": "LogicalName,AttributeType,RequiredLevel,IsValidForCreate,IsValidForUpdate"},
    ).json()["value"]
    by_name = {a["LogicalName"]: a for a in attributes}
    assert by_name["name"]["AttributeType"] == "String"
    assert by_name["name"]["RequiredLevel"]["Value"] == "ApplicationRequired"
    assert by_name["customertypecode"]["AttributeType"] == "Picklist"
    assert by_name["statecode"]["AttributeType"] == "State" and by_name["statecode"]["IsValidForCreate"] is False
    assert by_name["ownerid"]["AttributeType"] == "Owner"
    assert by_name["modifiedon"]["IsValidForUpdate"] is False
    strings = dv.get(
        "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata",
        params={"$select": "LogicalName,MaxLength"},
    ).json()["value"]
    assert {a["LogicalName"]: a["MaxLength"] for a in strings}["name"] == 160
    lookups = dv.get(
        "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata",
        params={"$select": "LogicalName,Targets"},
    ).json()["value"]
    assert {a["LogicalName"]: a["Targets"] for a in lookups}["parentcustomerid"] == ["account", "contact"]


def test_option_sets_through_the_picklist_cast(dv, seeded):
    picklists = dv.get(
        "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet($select=Options)"},
    ).json()["value"]
    relationship = next(a for a in picklists if a["LogicalName"] == "customertypecode")
    options = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in relationship["OptionSet"]["Options"]}
    assert options[3] == "Customer" and options[11] == "Vendor" and len(options) == 12
    states = dv.get(
        "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.StateAttributeMetadata",
        params={"$expand": "OptionSet"},
    ).json()["value"]
    assert [o["Value"] for o in states[0]["OptionSet"]["Options"]] == [0, 1]


def _all_pages(dv, url, headers=None):
    rows, body = [], None
    while url:
        body = dv.get(url, headers=headers or {}).json()
        rows += body["value"]
        url = body.get("@odata.nextLink")
    return rows, body


def test_change_tracking_initial_delta_and_deleted_entities(dv, seeded):
    first = dv.get(
        "accounts?$select=name,accountnumber,telephone1", headers={"Prefer": "odata.track-changes,odata.maxpagesize=10"}
    )
    assert first.headers["Preference-Applied"] == "odata.track-changes"
    assert "@odata.deltaLink" not in first.json()  # the delta link comes on the last page only
    rows, last = _all_pages(dv, first.json()["@odata.nextLink"], {"Prefer": "odata.maxpagesize=10"})
    rows += first.json()["value"]
    assert len({r["accountid"] for r in rows}) == 25
    delta = last["@odata.deltaLink"]
    assert "$deltatoken=" in delta and "$select=name,accountnumber,telephone1" in delta

    assert dv.get(delta).json()["value"] == []  # no changes yet
    changed, deleted = rows[0]["accountid"], rows[1]["accountid"]
    testing.edit_as_another_user("dataverse", "accounts", changed, telephone1="555-0199")
    testing.delete_as_another_user("dataverse", "accounts", deleted)
    dv.post("accounts", json={"accountid": (new := str(uuid.uuid4())), "name": "Fresh"})
    body = dv.get(delta).json()
    assert body["@odata.context"].endswith("$metadata#accounts(name,accountnumber,telephone1)/$delta")
    values = body["value"]
    assert [v["accountid"] for v in values[:2]] == [changed, new]
    assert values[0]["telephone1"] == "555-0199" and "@odata.etag" in values[0]
    assert values[2] == {
        "@odata.context": "http://testserver/sandbox/dataverse/api/data/v9.2/$metadata#accounts/$deletedEntity",
        "id": deleted,
        "reason": "deleted",
    }
    assert dv.get(body["@odata.deltaLink"]).json()["value"] == []
    assert dv.get(f"accounts/$count?$deltatoken={delta.split('$deltatoken=')[1]}").text == "3"


@pytest.mark.parametrize("option", ["$filter=name eq 'x'", "$orderby=name", "$top=5"])
def test_change_tracking_rejects_query_options(dv, seeded, option):
    response = dv.get(f"accounts?$select=name&{option}", headers={"Prefer": "odata.track-changes"})
    assert response.status_code == 400
    assert "isn't supported when Change Tracking is enabled" in response.json()["error"]["message"]


def test_expired_delta_token_forces_a_full_resync(dv, seeded):
    old = (datetime.now(UTC) - timedelta(days=8)).strftime("%m/%d/%Y %H:%M:%S")
    response = dv.get(f"accounts?$select=name&$deltatoken={quote('5!' + old, safe='')}")
    assert response.status_code == 400
    assert "full sync" in response.json()["error"]["message"]
    testing.set_change_tracking_days(10)
    assert dv.get(f"accounts?$select=name&$deltatoken={quote('5!' + old, safe='')}").status_code == 200
