"""Business Central JSON $batch (per-request status, Isolation: snapshot all-or-nothing, 100 at most), the service
document and $metadata."""

import xml.etree.ElementTree as ET  # noqa: S405

import pytest

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def batch(bc, requests, **headers):
    return bc.post("$batch", json={"requests": requests}, headers={"Content-Type": "application/json", **headers})


def test_documented_batch_example_answers_per_request(bc, company_id):
    row = bc.get(f"companies({company_id})/customers", params={"$top": 1}).json()["value"][0]
    response = batch(
        bc,
        [
            {
                "id": "1",
                "method": "PATCH",
                "url": f"companies({company_id})/customers({row['id']})",
                "headers": {"Content-Type": "application/json", "If-Match": row["@odata.etag"]},
                "body": {"displayName": "Coho Winery Inc."},
            },
            {"id": "2", "method": "GET", "url": f"companies({company_id})/vendors?$top=1"},
        ],
    )
    assert response.status_code == 200
    first, second = response.json()["responses"]
    assert first["id"] == "1" and first["status"] == 200
    assert first["body"]["displayName"] == "Coho Winery Inc."
    assert first["headers"]["content-type"].startswith("application/json")
    assert second["id"] == "2" and second["status"] == 200 and len(second["body"]["value"]) == 1


def test_without_isolation_each_request_commits_on_its_own(bc, company_id):
    response = batch(
        bc,
        [
            {"id": "a", "method": "POST", "url": f"companies({company_id})/customers", "body": {"displayName": "Kept"}},
            {"id": "b", "method": "POST", "url": f"companies({company_id})/customers", "body": {"displayName": ""}},
            {"method": "PATCH", "url": f"companies({company_id})/customers(5b3f2a1c-0000-4000-8000-000000000001)",
             "headers": {"If-Match": "*"}, "body": {"displayName": "x"}},
        ],
    )  # fmt: skip
    statuses = [(r["id"], r["status"]) for r in response.json()["responses"]]
    assert statuses == [("a", 201), ("b", 400), (None, 404)]
    assert response.json()["responses"][1]["body"]["error"]["code"] == "BadRequest_RequiredParamNotProvided"
    kept = bc.get(f"companies({company_id})/customers", params={"$filter": "displayName eq 'Kept'"}).json()["value"]
    assert len(kept) == 1


def test_isolation_snapshot_rolls_everything_back(bc, company_id):
    row = bc.get(f"companies({company_id})/customers", params={"$top": 1}).json()["value"][0]
    response = batch(
        bc,
        [
            {"id": "1", "method": "POST", "url": f"companies({company_id})/customers", "body": {"displayName": "Gone"}},
            {"id": "2", "method": "PATCH", "url": f"companies({company_id})/customers({row['id']})",
             "headers": {"If-Match": "*"}, "body": {"displayName": "Also gone"}},
            {"id": "3", "method": "PATCH", "url": f"companies({company_id})/customers({row['id']})",
             "headers": {"If-Match": 'W/"stale"'}, "body": {"displayName": "Conflict"}},
        ],
        Isolation="snapshot",
    )  # fmt: skip
    assert [r["status"] for r in response.json()["responses"]] == [201, 200, 409]
    gone = bc.get(f"companies({company_id})/customers", params={"$filter": "displayName eq 'Gone'"}).json()["value"]
    assert gone == []
    assert bc.get(f"companies({company_id})/customers({row['id']})").json()["displayName"] == row["displayName"]


def test_more_than_100_requests_are_refused(bc, company_id):
    requests = [{"id": str(i), "method": "GET", "url": "companies"} for i in range(101)]
    response = batch(bc, requests)
    assert response.status_code == 400
    assert len(batch(bc, requests[:100]).json()["responses"]) == 100


def test_service_document_and_metadata(bc, company_id):
    names = {v["name"] for v in bc.get("").json()["value"]}
    assert {"companies", "customers", "vendors", "contacts", "currencies", "salespeoplePurchasers"} <= names
    response = bc.get("$metadata")
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)  # noqa: S314 (our own emulator's answer)
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    customer = root.find(".//edm:EntityType[@Name='customer']", ns)
    number = customer.find("edm:Property[@Name='number']", ns)
    assert number.get("Type") == "Edm.String" and number.get("MaxLength") == "20"
    blocked = customer.find("edm:Property[@Name='blocked']", ns).get("Type")
    members = [m.get("Name") for m in root.find(f".//edm:EnumType[@Name='{blocked.split('.')[-1]}']", ns)]
    assert members == ["_x0020_", "Ship", "Invoice", "All"]
    sets = {e.get("Name") for e in root.iter("{http://docs.oasis-open.org/odata/ns/edm}EntitySet")}
    assert "salespeoplePurchasers" in sets
