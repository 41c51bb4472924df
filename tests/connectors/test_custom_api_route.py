"""A custom API page of a Business Central extension, read and written through its own route by the same client."""

import uuid

import pytest

from connectors.bc_routes import split_route
from connectors.clients import open_client
from connectors.types import ConnectorError, WriteOperation

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])
PROJECTS = "contoso/projects/v1.0/projects"


def test_a_custom_api_page_is_read_written_counted_and_described_at_its_route(bc_connection):
    """An API page lives at `api/{publisher}/{group}/{version}/companies(<id>)/{entitySet}`, with its own `$metadata`
    and `$batch`. https://learn.microsoft.com/dynamics365/business-central/dev-itpro/developer/devenv-develop-custom-api
    """
    with open_client(bc_connection) as client:
        created, item = client.write_many(
            [
                WriteOperation("create", PROJECTS, "p", {"description": "Warehouse fit-out", "budgetAmount": 1200}),
                WriteOperation("create", "items", "i", {"displayName": "Shelf", "unitPrice": 80}),
            ]
        )
        assert created.ok and item.ok, (created.error, item.error)
        assert client.count(PROJECTS) == 1
        rows = [row for page in client.read_pages(PROJECTS) for row in page.rows]
        assert [(r["description"], r["number"]) for r in rows] == [("Warehouse fit-out", "PRJ00010")]
        [updated] = client.write_many(
            [WriteOperation("update", PROJECTS, "u", {"status": "Open"}, created.record_id, created.etag)]
        )
        assert updated.ok
        again = client.read_by_ids(PROJECTS, [created.record_id, uuid.uuid4()])
        assert list(again) == [created.record_id] and again[created.record_id]["status"] == "Open"
        info = client.table_info(PROJECTS)
        assert info.entity_set == PROJECTS and info.columns["description"].max_length == 100
        assert set(info.columns["status"].options) == {"Planning", "Open", "On Hold", "Completed"}
        assert client.tables("contoso/projects/v1.0") == ["contoso/projects/v1.0/projectTypes", PROJECTS]
        assert PROJECTS not in client.tables()
        assert [r["displayName"] for p in client.read_pages("items") for r in p.rows] == ["Shelf"]


def test_a_malformed_route_is_refused_with_the_form_expected():
    with pytest.raises(ConnectorError, match="publisher/group/version/entitySet"):
        split_route("contoso/projects")
    assert split_route("customers") == ("v2.0", "customers")
