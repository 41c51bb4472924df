"""Metadata as strict as the real services: what Microsoft documents is answered, what the services refuse is refused
here too, so a metadata query of ours that production would refuse fails in the tests first."""

import xml.etree.ElementTree as ET  # noqa: S405

import httpx
import pytest
from django.core.wsgi import get_wsgi_application

from sandbox import services
from tests.sandbox.conftest import BC_SCOPE, HOST, get_token

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
CUSTOM_ROOT = f"{HOST}/sandbox/bc/v2.0/{services.DEMO_TENANT}/{services.DEMO_ENVIRONMENT}/api/contoso/projects/v1.0/"


@pytest.fixture
def bc_custom(http, registered):
    token = get_token(http, BC_SCOPE)
    with httpx.Client(
        transport=httpx.WSGITransport(app=get_wsgi_application()),
        base_url=CUSTOM_ROOT,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    ) as client:
        yield client


def _error(response) -> str:
    return response.json()["error"]["message"]


def test_an_unknown_select_property_is_refused_not_dropped(dv, seeded):
    """Dataverse answers 400 for a `$select` of a property the metadata type does not have; a derived type's property
    (MaxLength) needs the cast. https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    response = dv.get("EntityDefinitions", params={"$select": "LogicalName,NoSuchProperty"})
    assert response.status_code == 400
    assert "Could not find a property named 'NoSuchProperty'" in _error(response)
    response = dv.get(
        "EntityDefinitions(LogicalName='account')/Attributes", params={"$select": "LogicalName,MaxLength"}
    )
    assert response.status_code == 400 and "on type 'Microsoft.Dynamics.CRM.AttributeMetadata'" in _error(response)
    cast = "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"
    rows = dv.get(cast, params={"$select": "LogicalName,MaxLength"}).json()["value"]
    assert {r["LogicalName"]: r["MaxLength"] for r in rows if r["LogicalName"] == "name"} == {"name": 160}
    response = dv.get(
        "EntityDefinitions(LogicalName='account')/Attributes", params={"$expand": "OptionSet", "$select": "LogicalName"}
    )
    assert response.status_code == 400 and "'OptionSet'" in _error(response)


def test_expand_attributes_on_the_collection_and_with_select(dv, seeded):
    """`$expand=Attributes($select=...)` on EntityDefinitions, combined with the entity's `$select`, returns each
    entity's attributes. https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    response = dv.get(
        "EntityDefinitions",
        params={
            "$select": "LogicalName,EntitySetName",
            "$filter": "IsCustomEntity eq true",
            "$expand": "Attributes($select=LogicalName,AttributeType,IsCustomAttribute)",
        },
    )
    assert response.status_code == 200, response.text
    [project] = response.json()["value"]
    assert (project["LogicalName"], project["EntitySetName"]) == ("cr123_project", "cr123_projects")
    attributes = {a["LogicalName"]: a for a in project["Attributes"]}
    assert attributes["cr123_accountid"]["AttributeType"] == "Lookup"
    assert attributes["cr123_accountid"]["IsCustomAttribute"] is True and "Targets" not in attributes["cr123_name"]
    one = dv.get("EntityDefinitions(LogicalName='product')", params={"$select": "LogicalName", "$expand": "Attributes"})
    assert one.status_code == 200 and "productnumber" in {a["LogicalName"] for a in one.json()["Attributes"]}
    assert dv.get("EntityDefinitions", params={"$expand": "Nothing"}).status_code == 400


def test_keys_of_a_table(dv, seeded):
    """`EntityDefinitions(LogicalName='x')/Keys` lists the table's alternate keys (EntityKeyMetadata).
    https://learn.microsoft.com/power-apps/developer/data-platform/define-alternate-keys-entity
    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
    """
    response = dv.get("EntityDefinitions(LogicalName='cr123_project')/Keys")
    assert response.status_code == 200, response.text
    [key] = response.json()["value"]
    assert key["KeyAttributes"] == ["cr123_number"] and key["EntityKeyIndexStatus"] == "Active"
    expanded = dv.get(
        "EntityDefinitions(LogicalName='cr123_project')", params={"$expand": "Keys($select=KeyAttributes)"}
    ).json()
    assert expanded["Keys"][0]["KeyAttributes"] == ["cr123_number"]
    assert dv.get("EntityDefinitions(LogicalName='account')/Keys", params={"$select": "Nope"}).status_code == 400


def test_dataverse_csdl_declares_its_actions_and_functions(dv, seeded):
    """The CSDL `$metadata` declares the WhoAmI function, the bound *Multiple actions and InsertOptionValue, with
    their imports. https://learn.microsoft.com/power-apps/developer/data-platform/webapi/web-api-service-documents
    https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/upsertmultiple
    """
    root = ET.fromstring(dv.get("$metadata").text)  # noqa: S314
    functions = {f.get("Name") for f in root.iter(f"{EDM}Function")}
    actions = {a.get("Name"): a for a in root.iter(f"{EDM}Action")}
    assert "WhoAmI" in functions and {"UpsertMultiple", "CreateMultiple", "InsertOptionValue"} <= set(actions)
    assert actions["UpsertMultiple"].get("IsBound") == "true"
    imports = {i.get("Name") for i in root.iter(f"{EDM}FunctionImport")} | {
        i.get("Name") for i in root.iter(f"{EDM}ActionImport")
    }
    assert {"WhoAmI", "InsertOptionValue"} <= imports
    assert {e.get("Name") for e in root.iter(f"{EDM}EntitySet")} >= {"products", "cr123_projects"}


def test_bc_csdl_has_the_navigation_from_company_to_its_entity_sets(bc, seeded):
    """Business Central's `$metadata` contains each entity set in its company (`companies(<id>)/customers`): the
    company type has navigation properties and the companies set their bindings.
    https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/
    """
    root = ET.fromstring(bc.get("$metadata").text)  # noqa: S314
    company = next(e for e in root.iter(f"{EDM}EntityType") if e.get("Name") == "company")
    navigation = {n.get("Name"): n.get("Type") for n in company.iter(f"{EDM}NavigationProperty")}
    assert navigation["customers"] == "Collection(Microsoft.NAV.customer)"
    assert navigation["items"] == "Collection(Microsoft.NAV.item)" and "projects" not in navigation
    companies = next(e for e in root.iter(f"{EDM}EntitySet") if e.get("Name") == "companies")
    assert "customers" in {b.get("Path") for b in companies.iter(f"{EDM}NavigationPropertyBinding")}


def test_a_custom_api_page_answers_under_its_own_route(bc, bc_custom, company_id):
    """An extension's API page is published at `api/{publisher}/{group}/{version}` with its own `$metadata`, and is
    not part of the standard v2.0 API.
    https://learn.microsoft.com/dynamics365/business-central/dev-itpro/developer/devenv-develop-custom-api
    """
    root = ET.fromstring(bc_custom.get("$metadata").text)  # noqa: S314
    assert {e.get("Name") for e in root.iter(f"{EDM}EntitySet")} == {"companies", "projects", "projectTypes"}
    created = bc_custom.post(f"companies({company_id})/projects", json={"description": "Fit-out", "status": "Open"})
    assert created.status_code == 201, created.text
    assert created.json()["number"] == "PRJ00010"
    rows = bc_custom.get(f"companies({company_id})/projects").json()["value"]
    assert [r["description"] for r in rows] == ["Fit-out"]
    assert bc.get(f"companies({company_id})/projects").status_code == 404
    assert bc_custom.get(f"companies({company_id})/customers").status_code == 404


def test_a_batch_request_may_name_its_company_in_a_company_header(bc, company_id):
    """Inside a JSON `$batch`, a request may name its company with a `Company` header instead of the URL, as in
    Microsoft's example (`"url": "items(<id>)"`).
    https://learn.microsoft.com/dynamics365/business-central/dev-itpro/developer/devenv-connect-apps-tips
    """
    company = bc.get(f"companies({company_id})").json()
    response = bc.post(
        "$batch",
        json={
            "requests": [
                {"id": "1", "method": "POST", "url": "items", "headers": {"Company": company["name"]},
                 "body": {"displayName": "Bicycle", "unitPrice": 350}},
                {"id": "2", "method": "GET", "url": "items?$top=5", "headers": {"Company": company_id}},
                {"id": "3", "method": "GET", "url": "items", "headers": {"Company": "No Such Company"}},
            ]
        },
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    first, second, third = response.json()["responses"]
    assert first["status"] == 201, first
    assert [r["displayName"] for r in second["body"]["value"]] == ["Bicycle"]
    assert third["status"] == 404
    stored = bc.get(f"companies({company_id})/items").json()["value"]
    assert [(r["displayName"], r["unitPrice"]) for r in stored] == [("Bicycle", 350)]
