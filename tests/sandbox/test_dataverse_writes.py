"""Dataverse writes: POST 204 + OData-EntityId, PATCH upsert with conditional headers, 412 on stale ETags,
lookups through @odata.bind only, alternate keys, validation errors with Dataverse's hex codes."""

import uuid

import pytest

from sandbox import testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def etag_number(etag):
    return int(etag[3:-1])


def test_post_answers_204_with_odata_entity_id(dv, seeded):
    response = dv.post("accounts", json={"name": "Sample Account"})
    assert response.status_code == 204
    assert response.content == b""
    entity = response.headers["OData-EntityId"]
    assert entity.startswith("http://testserver/sandbox/dataverse/api/data/v9.2/accounts(")
    created_id = entity.rsplit("(", 1)[1].rstrip(")")
    row = dv.get(f"accounts({created_id})").json()
    assert row["name"] == "Sample Account"
    assert row["statecode"] == 0 and row["statuscode"] == 1
    assert row["_ownerid_value"] and row["_createdby_value"] == row["_modifiedby_value"]


def test_post_with_representation_and_client_chosen_id(dv, seeded):
    chosen = str(uuid.uuid4())
    response = dv.post(
        "accounts?$select=name,accountid",
        json={"accountid": chosen, "name": "Chosen"},
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    assert "OData-EntityId" not in response.headers
    body = response.json()
    assert body["accountid"] == chosen and body["name"] == "Chosen"
    assert body["@odata.context"].endswith("$metadata#accounts(name,accountid)/$entity")
    assert response.headers["ETag"] == body["@odata.etag"]
    again = dv.post("accounts", json={"accountid": chosen, "name": "Again"})
    assert again.status_code == 412


def test_patch_is_an_upsert_and_conditional_headers_restrict_it(dv, seeded):
    new_id = str(uuid.uuid4())
    assert dv.patch(f"accounts({new_id})", json={"name": "Upserted"}, headers={"If-Match": "*"}).status_code == 404
    created = dv.patch(f"accounts({new_id})", json={"name": "Upserted"}, headers={"Prefer": "return=representation"})
    assert created.status_code == 201 and created.json()["accountid"] == new_id
    updated = dv.patch(f"accounts({new_id})", json={"name": "Updated"}, headers={"Prefer": "return=representation"})
    assert updated.status_code == 200 and updated.json()["name"] == "Updated"
    plain = dv.patch(f"accounts({new_id})", json={"telephone1": "555"})
    assert plain.status_code == 204 and plain.headers["OData-EntityId"].endswith(f"accounts({new_id})")
    exists = dv.patch(f"accounts({new_id})", json={"name": "x"}, headers={"If-None-Match": "*"})
    assert exists.status_code == 412
    only_new = str(uuid.uuid4())
    assert dv.patch(f"accounts({only_new})", json={"name": "y"}, headers={"If-None-Match": "*"}).status_code == 204


def test_every_write_bumps_the_version_and_stale_etag_is_412(dv, seeded):
    dv.post("accounts", json={"accountid": (rid := str(uuid.uuid4())), "name": "Versioned"})
    first = dv.get(f"accounts({rid})").json()
    dv.patch(f"accounts({rid})", json={"name": "Versioned 2"}, headers={"If-Match": first["@odata.etag"]})
    second = dv.get(f"accounts({rid})").json()
    assert etag_number(second["@odata.etag"]) > etag_number(first["@odata.etag"])
    assert second["modifiedon"] >= first["modifiedon"]
    stale = dv.patch(f"accounts({rid})", json={"name": "lost"}, headers={"If-Match": first["@odata.etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"]["message"] == (
        "The version of the existing record doesn't match the RowVersion property provided."
    )
    assert dv.delete(f"accounts({rid})", headers={"If-Match": first["@odata.etag"]}).status_code == 412
    testing.edit_as_another_user("dataverse", "accounts", rid, name="Changed by Alex")
    third = dv.get(f"accounts({rid})").json()
    assert third["name"] == "Changed by Alex"
    assert etag_number(third["@odata.etag"]) > etag_number(second["@odata.etag"])
    assert third["_modifiedby_value"] != second["_modifiedby_value"]
    assert dv.delete(f"accounts({rid})", headers={"If-Match": third["@odata.etag"]}).status_code == 204
    assert dv.get(f"accounts({rid})").status_code == 404
    assert dv.delete(f"accounts({rid})").status_code == 404


def test_lookups_are_written_only_through_odata_bind(dv, seeded):
    parent = dv.get("accounts", params={"$top": 1}).json()["value"][0]["accountid"]
    usd = dv.get("transactioncurrencies", params={"$filter": "isocurrencycode eq 'USD'"}).json()["value"][0]
    response = dv.post(
        "accounts",
        json={
            "name": "Child",
            "parentaccountid@odata.bind": f"/accounts({parent})",
            "transactioncurrencyid@odata.bind": f"transactioncurrencies({usd['transactioncurrencyid']})",
        },
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    assert response.json()["_parentaccountid_value"] == parent
    child = response.json()["accountid"]
    direct = dv.patch(f"accounts({child})", json={"_parentaccountid_value": parent})
    assert direct.status_code == 400
    missing = dv.patch(f"accounts({child})", json={"parentaccountid@odata.bind": f"/accounts({uuid.uuid4()})"})
    assert missing.status_code == 404
    wrong_target = dv.patch(f"accounts({child})", json={"parentaccountid@odata.bind": f"/contacts({uuid.uuid4()})"})
    assert wrong_target.status_code == 400
    cleared = dv.patch(f"accounts({child})", json={"parentaccountid@odata.bind": None})
    assert cleared.status_code == 204
    assert dv.get(f"accounts({child})").json()["_parentaccountid_value"] is None


def test_contact_parent_customer_binds_to_account_or_contact(dv, seeded):
    account = dv.get("accounts", params={"$top": 1}).json()["value"][0]["accountid"]
    response = dv.post(
        "contacts",
        json={"lastname": "Lee", "firstname": "Ann", "parentcustomerid_account@odata.bind": f"/accounts({account})"},
        headers={"Prefer": "return=representation", "Prefer-Extra": "ignored"},
    )
    assert response.status_code == 201, response.text
    contact = response.json()
    assert contact["_parentcustomerid_value"] == account and contact["fullname"] == "Ann Lee"
    assert contact["_accountid_value"] == account
    sub = dv.post(
        "contacts",
        json={"lastname": "Kid", "parentcustomerid_contact@odata.bind": f"/contacts({contact['contactid']})"},
        headers={"Prefer": 'return=representation,odata.include-annotations="*"'},
    ).json()
    assert sub["_parentcustomerid_value"] == contact["contactid"]
    assert sub["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"
    assert sub["_accountid_value"] is None
    plain = dv.post("contacts", json={"lastname": "X", "parentcustomerid@odata.bind": f"/accounts({account})"})
    assert plain.status_code == 400


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "n" * 161}, "0x80044331"),
        ({"name": "ok", "customertypecode": 99}, "0x8004431a"),
        ({"name": "ok", "statecode": 1}, "0x80040203"),
        ({"telephone1": "555"}, "0x80040203"),
        ({"name": "ok", "numberofemployees": "many"}, "0x80060888"),
        ({"name": "ok", "nosuchcolumn": 1}, "0x80060888"),
    ],
)
def test_validation_errors(dv, seeded, body, code):
    response = dv.post("accounts", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_max_length_message_is_the_documented_one(dv, seeded):
    message = dv.post("accounts", json={"name": "n" * 161}).json()["error"]["message"]
    assert message == (
        "A validation error occurred.  The length of the 'name' attribute of the 'account' entity exceeded the "
        "maximum allowed length of '160'."
    )


def test_state_can_change_with_patch(dv, seeded):
    rid = str(uuid.uuid4())
    dv.post("accounts", json={"accountid": rid, "name": "Going away"})
    assert dv.patch(f"accounts({rid})", json={"statecode": 1, "statuscode": 2}).status_code == 204
    row = dv.get(f"accounts({rid})").json()
    assert (row["statecode"], row["statuscode"]) == (1, 2)
    assert dv.patch(f"accounts({rid})", json={"statecode": 0, "statuscode": 2}).status_code == 400


def test_alternate_keys_only_when_configured_and_unique(dv, seeded):
    undefined = dv.get("accounts(accountnumber='C10000')")
    assert undefined.status_code == 400
    assert "The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.account'" in undefined.text
    testing.set_alternate_keys("accounts", [["accountnumber"]])
    created = dv.patch("accounts(accountnumber='C10000')", json={"name": "By key"})
    assert created.status_code == 204
    assert created.headers["OData-EntityId"].endswith("accounts(accountnumber='C10000')")
    row = dv.get("accounts(accountnumber='C10000')").json()
    assert row["name"] == "By key" and row["accountnumber"] == "C10000"
    dv.patch("accounts(accountnumber='C10000')", json={"name": "By key 2"})
    assert dv.get(f"accounts({row['accountid']})").json()["name"] == "By key 2"
    duplicate = dv.post("accounts", json={"name": "Dup", "accountnumber": "C10000"})
    assert duplicate.status_code == 412
    assert duplicate.json()["error"]["code"] == "0x80060892"
    assert dv.get(f"accounts(accountid={row['accountid']})").status_code == 200
    bound = dv.post(
        "contacts", json={"lastname": "K", "parentcustomerid_account@odata.bind": "/accounts(accountnumber='C10000')"}
    )
    assert bound.status_code == 204


def test_transaction_currency_iso_code_is_unique(dv, seeded):
    body = {
        "isocurrencycode": "usd",
        "currencyname": "Dollar",
        "currencysymbol": "$",
        "currencyprecision": 2,
        "exchangerate": 1,
    }
    assert dv.post("transactioncurrencies", json=body).status_code == 412
    assert dv.post("transactioncurrencies", json={**body, "isocurrencycode": "NOK"}).status_code == 204
