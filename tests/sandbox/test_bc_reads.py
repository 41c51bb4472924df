"""Business Central reads: company scoping, $filter rules, $select/$orderby/$top/$skip/$count, server-driven paging."""

import uuid

import pytest

from sandbox import testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def customers(company_id):
    return f"companies({company_id})/customers"


def test_companies_list_the_demo_company(bc, company_id):
    body = bc.get("companies").json()
    assert body["@odata.context"].endswith("/api/v2.0/$metadata#companies")
    [company] = body["value"]
    assert company["id"] == company_id
    assert company["name"] == company["displayName"] == "CRONUS USA, Inc."


def test_unknown_company_and_missing_company_are_errors(bc, company_id):
    unknown = bc.get("companies(00000000-0000-0000-0000-00000000abcd)/customers")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "Internal_CompanyNotFound"
    unscoped = bc.get("customers")
    assert unscoped.status_code == 400
    assert bc.get("customers", params={"company": company_id}).status_code == 200


def test_documented_list_example_pages_with_opaque_skiptoken(bc, company_id):
    """protocols.md §2.11: the list request with $select, a datetime $filter and Prefer: odata.maxpagesize=2."""
    response = bc.get(
        f"{customers(company_id)}?$select=id,number,displayName,email,lastModifiedDateTime"
        "&$filter=lastModifiedDateTime gt 2024-03-01T00:00:00Z",
        headers={"Prefer": "odata.maxpagesize=2"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith(
        f"$metadata#companies({company_id})/customers(id,number,displayName,email,lastModifiedDateTime)"
    )
    assert len(body["value"]) == 2
    row = body["value"][0]
    assert list(row) == ["@odata.etag", "id", "number", "displayName", "email", "lastModifiedDateTime"]
    assert row["@odata.etag"].startswith('W/"') and row["lastModifiedDateTime"].endswith("Z")
    assert len(row["lastModifiedDateTime"]) == len("2024-03-02T07:38:44.293Z")
    link = body["@odata.nextLink"]
    assert "aid=FIN" in link and "$skiptoken=" in link
    token = link.split("$skiptoken=")[1]
    assert not token.isdigit()  # opaque, not an offset
    seen = [r["id"] for r in body["value"]]
    while link:
        page = bc.get(link, headers={"Prefer": "odata.maxpagesize=2"}).json()
        assert set(page["value"][0]) == set(row)  # $select survives in the link
        seen += [r["id"] for r in page["value"]]
        link = page.get("@odata.nextLink")
    assert len(seen) == len(set(seen)) == 30


def test_full_entity_shape_blank_currency_and_enums(bc, company_id):
    row = bc.get(customers(company_id), params={"$top": 1}).json()["value"][0]
    expected = {
        "id", "number", "displayName", "type", "addressLine1", "addressLine2", "city", "state", "country",
        "postalCode", "phoneNumber", "email", "website", "salespersonCode", "balanceDue", "creditLimit", "taxLiable",
        "taxAreaId", "taxAreaDisplayName", "taxRegistrationNumber", "currencyId", "currencyCode", "paymentTermsId",
        "shipmentMethodId", "paymentMethodId", "blocked", "lastModifiedDateTime",
    }  # fmt: skip
    assert set(row) - {"@odata.etag"} == expected
    assert row["currencyCode"] == "USD"
    assert row["currencyId"] == "00000000-0000-0000-0000-000000000000"
    assert row["blocked"] in (" ", "Ship", "Invoice", "All")
    assert row["addressLine2"] == ""  # blank text is "", not null


def test_page_cap_applies_without_prefer_and_caps_prefer(bc, company_id):
    testing.set_page_cap("bc", 7)
    body = bc.get(customers(company_id)).json()
    assert len(body["value"]) == 7 and "@odata.nextLink" in body
    capped = bc.get(customers(company_id), headers={"Prefer": "odata.maxpagesize=500"})
    assert len(capped.json()["value"]) == 7
    assert capped.headers["Preference-Applied"] == "odata.maxpagesize=7"


def test_top_within_cap_is_served_whole(bc, company_id):
    body = bc.get(customers(company_id), params={"$top": 12}).json()
    assert len(body["value"]) == 12 and "@odata.nextLink" not in body


def test_filters_on_datetime_strings_guids(bc, company_id):
    rows = bc.get(customers(company_id), params={"$orderby": "lastModifiedDateTime"}).json()["value"]
    middle = rows[15]["lastModifiedDateTime"]
    newer = bc.get(customers(company_id), params={"$filter": f"lastModifiedDateTime gt {middle}"}).json()["value"]
    assert {r["id"] for r in newer} == {r["id"] for r in rows[16:]}
    not_older = bc.get(customers(company_id), params={"$filter": f"lastModifiedDateTime ge {middle}"}).json()["value"]
    assert len(not_older) == 15
    by_number = bc.get(customers(company_id), params={"$filter": f"number eq '{rows[3]['number']}'"}).json()["value"]
    assert [r["id"] for r in by_number] == [rows[3]["id"]]
    by_id = bc.get(customers(company_id), params={"$filter": f"id eq {rows[4]['id']}"}).json()["value"]
    assert [r["id"] for r in by_id] == [rows[4]["id"]]
    either = bc.get(
        customers(company_id), params={"$filter": f"id eq {rows[1]['id']} or id eq {rows[2]['id']}"}
    ).json()["value"]
    assert {r["id"] for r in either} == {rows[1]["id"], rows[2]["id"]}
    prefix = rows[0]["displayName"][:3]
    started = bc.get(customers(company_id), params={"$filter": f"startswith(displayName,'{prefix}')"}).json()["value"]
    assert rows[0]["id"] in {r["id"] for r in started}
    assert all(r["displayName"].startswith(prefix) for r in started)


def test_or_across_distinct_fields_is_refused_as_documented(bc, company_id):
    response = bc.get(customers(company_id), params={"$filter": "number eq '10000' or displayName eq 'x'"})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("The 'OR' operator is not supported on distinct fields on an OData filter.")
    assert "CorrelationId:" in message


def test_long_or_chains_are_answered_and_judged_whole(bc, company_id):
    """A chain of 1,200 `or`s, 1,200 levels deep as parsed, is read (no recursion limit, no SQLite expression depth
    limit: the equalities on one field become one IN), and one distinct field at its very end is still refused."""
    rows = bc.get(customers(company_id), params={"$top": 3}).json()["value"]
    ids = [r["id"] for r in rows] + [str(uuid.uuid4()) for _ in range(1197)]
    chain = " or ".join(f"id eq {i}" for i in ids)
    found = bc.get(customers(company_id), params={"$filter": chain})
    assert found.status_code == 200
    assert {r["id"] for r in found.json()["value"]} == {r["id"] for r in rows}
    refused = bc.get(customers(company_id), params={"$filter": f"{chain} or displayName eq 'x'"})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith("The 'OR' operator is not supported on distinct fields")


def test_bad_filters_are_400_not_ignored(bc, company_id):
    for bad in ("nosuchfield eq 1", "displayName eq", "id eq 'not-a-guid-literal'", "length(displayName) gt 3"):
        response = bc.get(customers(company_id), params={"$filter": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"].startswith("BadRequest_")


def test_select_orderby_skip_and_count(bc, company_id):
    desc = bc.get(customers(company_id), params={"$orderby": "number desc", "$select": "number"}).json()["value"]
    numbers = [r["number"] for r in desc]
    assert numbers == sorted(numbers, reverse=True)
    assert set(desc[0]) == {"@odata.etag", "number"}
    skipped = bc.get(customers(company_id), params={"$orderby": "number desc", "$skip": 5, "$top": 2}).json()
    assert [r["number"] for r in skipped["value"]] == numbers[5:7]
    counted = bc.get(customers(company_id), params={"$count": "true", "$top": 1}).json()
    assert counted["@odata.count"] == 30
    assert bc.get(f"{customers(company_id)}/$count").text == "30"
    assert bc.get(customers(company_id), params={"$select": "nosuch"}).status_code == 400


def test_orderby_pages_keep_order_across_pages(bc, company_id):
    link = f"{customers(company_id)}?$orderby=displayName desc&$select=displayName"
    names = []
    while link:
        page = bc.get(link, headers={"Prefer": "odata.maxpagesize=4"}).json()
        names += [r["displayName"] for r in page["value"]]
        link = page.get("@odata.nextLink")
    assert len(names) == 30
    assert names == sorted(names, reverse=True)


def test_get_one_and_missing_one(bc, company_id):
    row = bc.get(customers(company_id), params={"$top": 1}).json()["value"][0]
    one = bc.get(f"{customers(company_id)}({row['id']})")
    assert one.status_code == 200
    assert one.json()["@odata.context"].endswith(f"companies({company_id})/customers/$entity")
    assert one.json()["id"] == row["id"]
    missing = bc.get(f"{customers(company_id)}(00000000-0000-0000-0000-000000000001)")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"].endswith(".") and "CorrelationId:  " in missing.json()["error"]["message"]


def test_other_tables_are_served(bc, company_id):
    for entity_set, minimum in (
        ("vendors", 1),
        ("contacts", 2),
        ("currencies", 3),
        ("salespeoplePurchasers", 3),
        ("paymentTerms", 3),
        ("shipmentMethods", 3),
    ):
        response = bc.get(f"companies({company_id})/{entity_set}")
        assert response.status_code == 200, entity_set
        assert len(response.json()["value"]) >= minimum, entity_set
    currency = bc.get(f"companies({company_id})/currencies", params={"$filter": "code eq 'CAD'"}).json()["value"][0]
    assert currency["amountDecimalPlaces"] == "2:2" and currency["amountRoundingPrecision"] == 0.01


def test_in_operator_needs_schemaversion_2_1(bc, company_id):
    rows = bc.get(customers(company_id), params={"$top": 2, "$select": "number"}).json()["value"]
    wanted = f"number in ('{rows[0]['number']}','{rows[1]['number']}')"
    assert bc.get(customers(company_id), params={"$filter": wanted}).status_code == 400
    found = bc.get(customers(company_id), params={"$filter": wanted, "$schemaversion": "2.1"}).json()["value"]
    assert {r["number"] for r in found} == {r["number"] for r in rows}


def test_conditional_get_answers_304_while_unchanged(bc, company_id):
    row = bc.get(customers(company_id), params={"$top": 1}).json()["value"][0]
    url = f"{customers(company_id)}({row['id']})"
    assert bc.get(url, headers={"If-None-Match": row["@odata.etag"]}).status_code == 304
    testing.edit_as_another_user("bc", "customers", row["id"], city="Elsewhere")
    assert bc.get(url, headers={"If-None-Match": row["@odata.etag"]}).status_code == 200
