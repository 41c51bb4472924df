"""Business Central writes: POST 201, PATCH with required If-Match (409 when stale), DELETE 204, no upsert,
number series, Code fields, validation errors in BC's envelope."""

import time

import pytest

from sandbox import testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def customers(company_id):
    return f"companies({company_id})/customers"


def create(bc, company_id, **values):
    response = bc.post(customers(company_id), json={"displayName": "Coho Winery", **values})
    assert response.status_code == 201, response.text
    return response.json()


def test_post_returns_201_with_the_full_entity_and_a_series_number(bc, company_id):
    first = create(bc, company_id, country="us", postalCode="ab 12")
    second = create(bc, company_id)
    assert first["id"] and first["@odata.etag"].startswith('W/"')
    assert first["number"].startswith("C") and first["number"] != second["number"]
    assert first["country"] == "US" and first["postalCode"] == "AB 12"  # Code fields are upper-cased
    assert first["currencyCode"] == "USD" and first["currencyId"] == "00000000-0000-0000-0000-000000000000"
    assert first["blocked"] == " " and first["type"] == "Company"
    assert bc.get(f"{customers(company_id)}({first['id']})").json()["displayName"] == "Coho Winery"


def test_post_with_an_existing_number_is_a_conflict(bc, company_id):
    created = create(bc, company_id, number="X100")
    assert created["number"] == "X100"
    again = bc.post(customers(company_id), json={"displayName": "Other", "number": "x100"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "Internal_EntityWithSameKeyExists"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "BadRequest_RequiredParamNotProvided"),
        ({"displayName": ""}, 400, "BadRequest_RequiredParamNotProvided"),
        ({"displayName": "x" * 101}, 400, "Application_StringExceededLength"),
        ({"displayName": "A", "number": "N" * 21}, 400, "Application_StringExceededLength"),
        ({"displayName": "A", "blocked": "Everything"}, 400, "BadRequest_InvalidRequestBody"),
        ({"displayName": "A", "phoneNumber": "call me"}, 400, "Application_FieldValidationException"),
        ({"displayName": "A", "nosuch": 1}, 400, "BadRequest_NotFound"),
        ({"displayName": "A", "balanceDue": 5}, 400, "BadRequest_InvalidOperation"),
        ({"displayName": "A", "currencyCode": "ZZZ"}, 400, "Internal_RecordNotFound"),
        ({"displayName": "A", "salespersonCode": "NOPE"}, 400, "Internal_RecordNotFound"),
    ],
)
def test_validation_errors(bc, company_id, body, status, code):
    response = bc.post(customers(company_id), json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert "  CorrelationId:  " in error["message"]


def test_string_exceeded_message_is_the_documented_one(bc, company_id):
    response = bc.post(customers(company_id), json={"displayName": "x" * 57, "addressLine2": "y" * 57})
    assert response.json()["error"]["message"].startswith(
        "The length of the string is 57, but it must be less than or equal to 50 characters. Value: yyy"
    )


def test_currency_code_and_id_resolve_each_other(bc, company_id):
    cad = bc.get(f"companies({company_id})/currencies", params={"$filter": "code eq 'CAD'"}).json()["value"][0]
    by_code = create(bc, company_id, currencyCode="cad")
    assert by_code["currencyCode"] == "CAD" and by_code["currencyId"] == cad["id"]
    by_id = create(bc, company_id, currencyId=cad["id"])
    assert by_id["currencyCode"] == "CAD"
    lcy = create(bc, company_id, currencyCode="USD")
    assert lcy["currencyCode"] == "USD" and lcy["currencyId"] == "00000000-0000-0000-0000-000000000000"


def test_patch_requires_if_match(bc, company_id):
    row = create(bc, company_id)
    response = bc.patch(f"{customers(company_id)}({row['id']})", json={"displayName": "Coho Winery Inc."})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest_InvalidToken"
    assert response.json()["error"]["message"].startswith(
        "Could not validate the client concurrency token required by the service."
    )


def test_patch_returns_200_new_etag_and_later_timestamp(bc, company_id):
    row = create(bc, company_id)
    time.sleep(0.002)
    response = bc.patch(
        f"{customers(company_id)}({row['id']})",
        json={"displayName": "Coho Winery Inc."},
        headers={"If-Match": row["@odata.etag"]},
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["displayName"] == "Coho Winery Inc."
    assert updated["@odata.etag"] != row["@odata.etag"]
    assert updated["lastModifiedDateTime"] > row["lastModifiedDateTime"]
    assert updated["number"] == row["number"]  # properties not sent keep their value


def test_documented_stale_update_answers_409_request_entity_changed(bc, company_id):
    row = create(bc, company_id)
    url = f"{customers(company_id)}({row['id']})"
    assert bc.patch(url, json={"city": "Atlanta"}, headers={"If-Match": row["@odata.etag"]}).status_code == 200
    stale = bc.patch(url, json={"displayName": "Coho Winery Inc."}, headers={"If-Match": row["@odata.etag"]})
    assert stale.status_code == 409
    error = stale.json()["error"]
    assert error["code"] == "Request_EntityChanged"
    assert error["message"].startswith("Another user has already changed the record.  CorrelationId:  ")
    assert bc.patch(url, json={"displayName": "Forced"}, headers={"If-Match": "*"}).status_code == 200


def test_edit_as_another_user_moves_the_etag(bc, company_id):
    row = create(bc, company_id)
    testing.edit_as_another_user("bc", "customers", row["id"], displayName="Changed elsewhere")
    current = bc.get(f"{customers(company_id)}({row['id']})").json()
    assert current["displayName"] == "Changed elsewhere"
    assert current["@odata.etag"] != row["@odata.etag"]
    assert current["lastModifiedDateTime"] > row["lastModifiedDateTime"]
    stale = bc.patch(
        f"{customers(company_id)}({row['id']})", json={"displayName": "Mine"}, headers={"If-Match": row["@odata.etag"]}
    )
    assert stale.status_code == 409


def test_no_upsert_patch_of_unknown_id_is_404(bc, company_id):
    response = bc.patch(
        f"{customers(company_id)}(5b3f2a1c-0000-4000-8000-000000000001)",
        json={"displayName": "New"},
        headers={"If-Match": "*"},
    )
    assert response.status_code == 404
    assert bc.get(customers(company_id), params={"$filter": "displayName eq 'New'"}).json()["value"] == []


def test_delete_204_then_404_and_stale_delete_409(bc, company_id):
    row = create(bc, company_id)
    url = f"{customers(company_id)}({row['id']})"
    testing.edit_as_another_user("bc", "customers", row["id"], city="Elsewhere")
    assert bc.delete(url, headers={"If-Match": row["@odata.etag"]}).status_code == 409
    assert bc.delete(url).status_code == 204
    assert bc.get(url).status_code == 404
    assert bc.delete(url).status_code == 404
    testing.delete_as_another_user("bc", "customers", create(bc, company_id)["id"])


def test_rename_by_patching_number_and_salesperson_relation(bc, company_id):
    row = create(bc, company_id)
    response = bc.patch(
        f"{customers(company_id)}({row['id']})",
        json={"number": "cust-9", "salespersonCode": "js"},
        headers={"If-Match": "*"},
    )
    assert response.status_code == 200
    assert response.json()["number"] == "CUST-9"
    assert response.json()["salespersonCode"] == "JS"


def test_writes_on_other_tables(bc, company_id):
    vendor = bc.post(f"companies({company_id})/vendors", json={"displayName": "Fabrikam", "blocked": "Payment"})
    assert vendor.status_code == 201 and vendor.json()["number"].startswith("V")
    bad_enum = bc.post(f"companies({company_id})/vendors", json={"displayName": "F", "blocked": "Ship"})
    assert bad_enum.status_code == 400
    currency = bc.post(f"companies({company_id})/currencies", json={"code": "nok", "displayName": "Norwegian krone"})
    assert currency.status_code == 201 and currency.json()["code"] == "NOK"
    no_code = bc.post(f"companies({company_id})/currencies", json={"displayName": "Nameless"})
    assert no_code.status_code == 400
    person = bc.post(f"companies({company_id})/salespeoplePurchasers", json={"code": "zz", "displayName": "Zed"})
    assert person.status_code == 201 and person.json()["code"] == "ZZ"
    company_contact = bc.post(f"companies({company_id})/contacts", json={"displayName": "Adatum", "type": "Company"})
    assert company_contact.status_code == 201
    number = company_contact.json()["number"]
    person_contact = bc.post(
        f"companies({company_id})/contacts", json={"displayName": "Ann Lee", "type": "Person", "companyNumber": number}
    )
    assert person_contact.status_code == 201
    assert person_contact.json()["companyName"] == "Adatum"


def test_prefer_return_no_content_answers_204(bc, company_id):
    response = bc.post(customers(company_id), json={"displayName": "Quiet"}, headers={"Prefer": "return-no-content"})
    assert response.status_code == 204 and response.content == b""
    assert "customers(" in response.headers["Location"]
