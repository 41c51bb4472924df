"""Dataverse reads: 5,000-row pages with Prefer/Preference-Applied, opaque skiptoken, no $skip, case-insensitive
filters, lookups as _x_value, formatted values, 404 message, conditional GET."""

import pytest

from sandbox import testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def test_service_document_lists_the_tables(dv, seeded):
    body = dv.get("").json()
    names = {v["name"] for v in body["value"]}
    assert {"accounts", "contacts", "systemusers", "transactioncurrencies"} <= names
    assert body["@odata.context"].endswith("/api/data/v9.2/$metadata")


def test_documented_list_example_with_annotations_and_paging(dv, seeded):
    """protocols.md §1.6: $select, datetime $filter, $orderby, maxpagesize=2 and formatted values."""
    response = dv.get(
        "accounts?$select=name,accountnumber,modifiedon&$filter=modifiedon gt 2024-03-01T00:00:00Z"
        "&$orderby=modifiedon asc",
        headers={"Prefer": 'odata.maxpagesize=2,odata.include-annotations="OData.Community.Display.V1.FormattedValue"'},
    )
    assert response.status_code == 200
    assert "odata.maxpagesize=2" in response.headers["Preference-Applied"]
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#accounts(name,accountnumber,modifiedon)")
    row = body["value"][0]
    assert set(row) == {
        "@odata.etag", "name", "accountnumber", "modifiedon", "accountid",
        "modifiedon@OData.Community.Display.V1.FormattedValue",
    }  # fmt: skip
    assert row["@odata.etag"].startswith('W/"') and row["@odata.etag"][3:-1].isdigit()
    assert len(row["modifiedon"]) == len("2024-03-02T16:00:00Z")
    link = body["@odata.nextLink"]
    assert "$skiptoken=%3Ccookie" in link
    stamps = [r["modifiedon"] for r in body["value"]]
    ids = [r["accountid"] for r in body["value"]]
    while link:
        page = dv.get(link, headers={"Prefer": "odata.maxpagesize=2"}).json()
        stamps += [r["modifiedon"] for r in page["value"]]
        ids += [r["accountid"] for r in page["value"]]
        link = page.get("@odata.nextLink")
    assert len(ids) == len(set(ids)) == 25
    assert stamps == sorted(stamps)


def test_default_page_is_the_cap_and_skip_is_rejected(dv, seeded):
    testing.set_page_cap("dataverse", 10)
    body = dv.get("accounts").json()
    assert len(body["value"]) == 10 and "@odata.nextLink" in body
    skip = dv.get("accounts", params={"$skip": 5})
    assert skip.status_code == 400
    assert skip.json()["error"]["message"].startswith("The query parameter $skip is not supported")


def test_top_caps_and_is_ignored_with_maxpagesize(dv, seeded):
    assert len(dv.get("accounts", params={"$top": 3}).json()["value"]) == 3
    assert "@odata.nextLink" not in dv.get("accounts", params={"$top": 3}).json()
    both = dv.get("accounts", params={"$top": 3}, headers={"Prefer": "odata.maxpagesize=5"}).json()
    assert len(both["value"]) == 5 and "@odata.nextLink" in both


def test_string_filters_are_case_insensitive(dv, seeded):
    name = dv.get("accounts", params={"$top": 1, "$select": "name"}).json()["value"][0]["name"]
    exact = dv.get("accounts", params={"$filter": f"name eq '{name.upper()}'"}).json()["value"]
    assert name in [r["name"] for r in exact]
    contains = dv.get("accounts", params={"$filter": f"contains(name,'{name[1:4].lower()}')"}).json()["value"]
    assert name in [r["name"] for r in contains]
    ends = dv.get("accounts", params={"$filter": f"endswith(name,'{name[-3:].swapcase()}')"}).json()["value"]
    assert name in [r["name"] for r in ends]
    negated = dv.get("accounts", params={"$filter": f"not startswith(name,'{name[:3]}')"}).json()["value"]
    assert name not in [r["name"] for r in negated]


def test_lookup_guid_and_option_filters(dv, seeded):
    row = dv.get("accounts", params={"$top": 1, "$select": "_ownerid_value,customertypecode"}).json()["value"][0]
    owner = row["_ownerid_value"]
    owned = dv.get("accounts", params={"$filter": f"_ownerid_value eq {owner}", "$select": "_ownerid_value"}).json()
    assert owned["value"] and all(r["_ownerid_value"] == owner for r in owned["value"])
    customers = dv.get("accounts", params={"$filter": "customertypecode eq 3 and statecode eq 0"}).json()["value"]
    vendors = dv.get("accounts", params={"$filter": "customertypecode eq 11"}).json()["value"]
    assert len(customers) + len(vendors) == 25
    nulls = dv.get("accounts", params={"$filter": "accountnumber eq null"}).json()["value"]
    assert len(nulls) == 25
    assert dv.get("accounts", params={"$filter": "_ownerid_value eq 'x'"}).status_code == 400
    assert dv.get("accounts", params={"$filter": "ownerid eq 1"}).status_code == 400
    assert dv.get("accounts", params={"$filter": "Microsoft.Dynamics.CRM.Today(PropertyName='x')"}).status_code == 400


def test_contacts_read_parent_as_lookup_property(dv, seeded):
    contact = dv.get("contacts", params={"$top": 1}).json()["value"][0]
    assert "_parentcustomerid_value" in contact and "parentcustomerid" not in contact
    parent = dv.get(f"accounts({contact['_parentcustomerid_value']})")
    assert parent.status_code == 200
    assert contact["fullname"] == f"{contact['firstname']} {contact['lastname']}"


def test_count_and_count_segment(dv, seeded):
    body = dv.get("accounts", params={"$count": "true", "$top": 1}).json()
    assert body["@odata.count"] == 25
    response = dv.get("accounts/$count")
    assert response.text == "25" and response.headers["content-type"].startswith("text/plain")


def test_single_row_example_missing_row_and_not_modified(dv, seeded):
    row = dv.get("accounts", params={"$top": 1}).json()["value"][0]
    select = (
        "name,accountnumber,statecode,statuscode,_parentaccountid_value,_transactioncurrencyid_value,_ownerid_value"
    )
    one = dv.get(f"accounts({row['accountid']})", params={"$select": select})
    body = one.json()
    assert body["@odata.context"].endswith(f"$metadata#accounts({select})/$entity")
    assert body["statecode"] == 0 and body["statuscode"] == 1 and body["_parentaccountid_value"] is None
    assert body["accountid"] == row["accountid"]
    assert dv.get(f"accounts({row['accountid']})", headers={"If-None-Match": body["@odata.etag"]}).status_code == 304
    missing = dv.get("accounts(00000000-0000-0000-0000-000000000001)")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "code": "0x80040217",
            "message": "account With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist",
        }
    }


def test_formatted_values_on_request(dv, seeded):
    row = dv.get(
        "accounts",
        params={"$top": 1, "$select": "customertypecode,creditonhold,creditlimit"},
        headers={"Prefer": 'odata.include-annotations="*"'},
    ).json()["value"][0]
    assert row["customertypecode@OData.Community.Display.V1.FormattedValue"] in ("Customer", "Vendor")
    assert row["creditonhold@OData.Community.Display.V1.FormattedValue"] == "No"
    assert "_transactioncurrencyid_value" in row  # added with money columns
    plain = dv.get("accounts", params={"$top": 1, "$select": "customertypecode"}).json()["value"][0]
    assert not any("@" in k and k != "@odata.etag" for k in plain)


def test_other_tables_are_served(dv, seeded):
    currencies = dv.get("transactioncurrencies", params={"$filter": "isocurrencycode eq 'usd'"}).json()["value"]
    assert currencies[0]["currencytype"] == 0 and currencies[0]["currencyname"] == "US Dollar"
    users = dv.get("systemusers", params={"$filter": "islicensed eq true"}).json()["value"]
    assert users and all(u["islicensed"] for u in users)


def test_column_to_column_comparison(dv, seeded):
    dv.post("contacts", json={"firstname": "Sam", "lastname": "sam"})
    same = dv.get("contacts", params={"$filter": "firstname eq lastname"}).json()["value"]
    assert [c["lastname"] for c in same] == ["sam"]  # case-insensitive, like the service


def test_an_empty_name_in_select_is_a_syntax_error_not_ignored(dv, seeded):
    response = dv.get("accounts", params={"$select": ",name"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Syntax error in ',name'."
