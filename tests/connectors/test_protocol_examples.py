"""The clients parse the example requests and responses of protocols.md exactly as written there.

These answer with the documented bodies through an httpx transport (no sandbox), so they pin the wire shapes
the real services use, independently of how faithful the emulator is.
"""

import json
from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest

from connectors.auth import clear_token_cache
from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.http import override_transport
from connectors.models import Connection
from connectors.resilience import RetryPolicy
from connectors.types import ConnectorError, ErrorKind, WriteOperation

SECRET = "s3cr3t-value-for-examples"
COMPANY = UUID("70c0c603-f4f9-ef11-9344-6045bdc8c234")
TOKEN = {"token_type": "Bearer", "expires_in": 3599, "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOi.example"}

BC_PAGE_1 = {
    "@odata.context": "https://api.businesscentral.dynamics.com/v2.0/t/production/api/v2.0/$metadata#companies"
    "(70c0c603-f4f9-ef11-9344-6045bdc8c234)/customers(id,number,displayName,email,lastModifiedDateTime)",
    "value": [
        {
            "@odata.etag": 'W/"JzE5OzEyMjU1NzUwNjQ3MjkxMTQ0Mjg5MTswMDsn"',
            "id": "f2a5738a-44e3-ea11-bb43-000d3a2feca1",
            "number": "10000",
            "displayName": "Adatum Corporation",
            "email": "robert.townes@contoso.com",
            "lastModifiedDateTime": "2024-03-02T07:38:44.293Z",
        }
    ],
    "@odata.nextLink": "https://api.businesscentral.dynamics.com/v2.0/t/production/api/v2.0/companies"
    "(70c0c603-f4f9-ef11-9344-6045bdc8c234)/customers?$select=id&aid=FIN&$skiptoken=f2a5738a-44e3-ea11-bb43-000d3a2feca1",
}
DATAVERSE_PAGE = {
    "@odata.context": "https://contoso.api.crm.dynamics.com/api/data/v9.2/$metadata#accounts(name,accountnumber,modifiedon)",
    "value": [
        {
            "@odata.etag": 'W/"81359849"',
            "name": "Litware, Inc.",
            "accountnumber": "C10000",
            "modifiedon@OData.Community.Display.V1.FormattedValue": "3/2/2024 9:00 AM",
            "modifiedon": "2024-03-02T16:00:00Z",
            "accountid": "78914942-34cb-ed11-b596-0022481d68cd",
        }
    ],
}


def bc_connection():
    connection = Connection(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name="BC example",
        environment_url="https://api.businesscentral.dynamics.com",
        tenant="t",
        bc_environment="production",
        bc_company_id=COMPANY,
        client_id="app",
        page_size=2,
    )
    connection.set_client_secret(SECRET)
    return connection


def dataverse_connection():
    connection = Connection(
        kind=ConnectionKind.DATAVERSE,
        name="DV example",
        environment_url="https://contoso.api.crm.dynamics.com",
        tenant="t",
        client_id="app",
        page_size=2,
    )
    connection.set_client_secret(SECRET)
    return connection


class Recorder:
    """Answer requests from a routing function and keep every request for assertions."""

    def __init__(self, route):
        self.route = route
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/oauth2/v2.0/token"):
            return httpx.Response(200, json=TOKEN)
        return self.route(request)


@pytest.fixture(autouse=True)
def _fresh_tokens():
    clear_token_cache()
    yield
    clear_token_cache()


def serve(route):
    recorder = Recorder(route)
    return recorder, override_transport(httpx.MockTransport(recorder))


def test_it_reads_bc_customers_page_by_page_following_the_next_link_verbatim():
    def route(request):
        if "$skiptoken" in str(request.url):
            return httpx.Response(200, json={"value": []})
        return httpx.Response(200, json=BC_PAGE_1)

    recorder, transport = serve(route)
    with transport, open_client(bc_connection()) as client:
        since = datetime(2024, 3, 1, tzinfo=UTC)
        pages = list(client.read_pages("customers", modified_since=since, filter="blocked eq ' '"))

    assert [row["displayName"] for row in pages[0].rows] == ["Adatum Corporation"]
    assert len(pages) == 2 and pages[1].next_link is None
    first, second = [r for r in recorder.requests if "customers" in r.url.path]
    assert first.url.path == f"/v2.0/t/production/api/v2.0/companies({COMPANY})/customers"
    assert first.url.params["$filter"] == "(blocked eq ' ') and (lastModifiedDateTime ge 2024-03-01T00:00:00.000Z)"
    assert str(second.url) == BC_PAGE_1["@odata.nextLink"]
    assert first.headers["Prefer"] == second.headers["Prefer"] == "odata.maxpagesize=2"
    assert first.headers["Authorization"] == f"Bearer {TOKEN['access_token']}"
    assert client.request_counts["token"] == 1 and client.request_counts["read"] == 2


def test_it_reads_dataverse_accounts_with_a_modifiedon_filter():
    recorder, transport = serve(lambda request: httpx.Response(200, json=DATAVERSE_PAGE))
    with transport, open_client(dataverse_connection()) as client:
        since = datetime(2024, 3, 1, 12, 30, 15, 999000, tzinfo=UTC)
        rows = client.read_by_ids("accounts", [UUID("78914942-34cb-ed11-b596-0022481d68cd")])
        pages = list(client.read_pages("accounts", modified_since=since, select=["name"]))

    assert rows[UUID("78914942-34cb-ed11-b596-0022481d68cd")]["name"] == "Litware, Inc."
    read = recorder.requests[-1]
    assert read.url.path == "/api/data/v9.2/accounts"
    assert read.url.params["$filter"] == "modifiedon ge 2024-03-01T12:30:15Z"
    assert read.url.params["$select"] == "name,accountid,modifiedon"
    assert read.headers["OData-Version"] == "4.0"
    assert pages[0].rows[0]["@odata.etag"] == 'W/"81359849"'


def test_a_stale_bc_update_is_a_conflict_with_the_code_and_correlation_id():
    stale = {
        "error": {
            "code": "Request_EntityChanged",
            "message": "Another user has already changed the record.  "
            "CorrelationId:  2b1c4c9e-0000-0000-0000-000000000000.",
        }
    }
    updated = {**BC_PAGE_1["value"][0], "displayName": "Coho Winery Inc.", "@odata.etag": 'W/"new"'}

    def route(request):
        body = json.loads(request.content)
        responses = []
        for part in body["requests"]:
            if part["headers"]["If-Match"] == 'W/"old"':
                responses.append({"id": part["id"], "status": 409, "body": stale})
            else:
                responses.append({"id": part["id"], "status": 200, "body": updated})
        return httpx.Response(200, json={"responses": list(reversed(responses))})

    recorder, transport = serve(route)
    record_id = UUID("f2a5738a-44e3-ea11-bb43-000d3a2feca1")
    operations = [
        WriteOperation("update", "customers", "a", {"displayName": "Coho Winery Inc."}, record_id, 'W/"old"'),
        WriteOperation("update", "customers", "b", {"displayName": "Coho Winery Inc."}, record_id, 'W/"current"'),
    ]
    with transport, open_client(bc_connection()) as client:
        results = client.write_many(operations)

    assert [r.ref for r in results] == ["a", "b"]
    assert results[0].ok is False and results[0].error.kind == ErrorKind.CONFLICT
    assert results[0].error.remote_code == "Request_EntityChanged"
    assert results[0].error.correlation_id == "2b1c4c9e-0000-0000-0000-000000000000"
    assert results[1].ok and results[1].etag == 'W/"new"'
    assert results[1].modified_on == datetime(2024, 3, 2, 7, 38, 44, 293000, tzinfo=UTC)
    batch = json.loads(recorder.requests[-1].content)["requests"]
    assert batch[0]["method"] == "PATCH"
    assert batch[0]["url"] == f"companies({COMPANY})/customers({record_id})"


def test_a_dataverse_missing_row_is_not_found_with_its_hex_code():
    missing = {
        "error": {
            "code": "0x80040217",
            "message": "account With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist",
        }
    }
    _, transport = serve(lambda request: httpx.Response(404, json=missing))
    with transport, open_client(dataverse_connection()) as client, pytest.raises(ConnectorError) as caught:
        list(client.read_pages("accounts"))
    assert caught.value.kind == ErrorKind.NOT_FOUND
    assert caught.value.remote_code == "0x80040217"


def test_the_documented_token_error_is_reported_plainly_without_the_secret():
    error = {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID.",
        "error_codes": [7000215],
        "timestamp": "2016-01-09 02:02:12Z",
        "trace_id": "255d1aef-8c98-452f-ac51-23d051240864",
        "correlation_id": "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7",
    }

    def handler(request):
        return httpx.Response(401, json=error)

    transport = override_transport(httpx.MockTransport(handler))
    with transport, open_client(bc_connection()) as client, pytest.raises(ConnectorError) as caught:
        client.count("customers")
    assert caught.value.kind == ErrorKind.AUTHENTICATION
    assert "client secret is wrong" in caught.value.message
    assert caught.value.correlation_id == "fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7"
    assert SECRET not in str(caught.value) + caught.value.detail()


def test_dataverse_upserts_go_through_upsert_multiple_and_are_read_back():
    record_id = UUID("78914942-34cb-ed11-b596-0022481d68cd")

    def route(request):
        if request.url.path.endswith("Microsoft.Dynamics.CRM.UpsertMultiple"):
            return httpx.Response(204)
        return httpx.Response(200, json=DATAVERSE_PAGE)

    recorder, transport = serve(route)
    operation = WriteOperation("upsert", "accounts", "x", {"name": "Litware, Inc."}, record_id)
    with transport, open_client(dataverse_connection(), retry_policy=RetryPolicy(max_attempts=1)) as client:
        [result] = client.write_many([operation])

    assert result.ok and result.record_id == record_id and result.etag == 'W/"81359849"'
    assert result.modified_on == datetime(2024, 3, 2, 16, 0, tzinfo=UTC)
    upsert = next(r for r in recorder.requests if r.url.path.endswith("UpsertMultiple"))
    [target] = json.loads(upsert.content)["Targets"]
    assert target["@odata.type"] == "Microsoft.Dynamics.CRM.account"
    assert target["accountid"] == str(record_id)


def test_a_dataverse_delta_response_separates_changed_rows_from_deleted_entities():
    delta = {
        "@odata.context": "https://contoso.api.crm.dynamics.com/api/data/v9.0/$metadata#accounts(name)/$delta",
        "value": [
            {"@odata.etag": 'W/"915244"', "name": "Monte Orton", "accountid": "60c4e274-0d87-e711-80e5-00155db19e6d"},
            {
                "@odata.context": "https://contoso.api.crm.dynamics.com/api/data/v9.0/$metadata#accounts/$deletedEntity",
                "id": "2e451703-c686-e711-80e5-00155db19e6d",
                "reason": "deleted",
            },
        ],
        "@odata.deltaLink": "https://contoso.api.crm.dynamics.com/api/data/v9.0/accounts?$select=name"
        "&$deltatoken=919058%2108%2f22%2f2017%2008%3a21%3a20",
    }
    recorder, transport = serve(lambda request: httpx.Response(200, json=delta))
    link = (
        "https://contoso.api.crm.dynamics.com/api/data/v9.2/accounts?$select=name&$deltatoken=919042%2108%2f22%2f2017"
    )
    with transport, open_client(dataverse_connection()) as client:
        [page] = list(client.read_changes("accounts", delta_link=link))

    assert [row["name"] for row in page.rows] == ["Monte Orton"]
    assert page.deleted_ids == [UUID("2e451703-c686-e711-80e5-00155db19e6d")]
    assert page.delta_link == delta["@odata.deltaLink"]
    assert str(recorder.requests[-1].url) == link  # followed verbatim


def test_a_delta_row_in_the_odata_4_01_removed_form_is_a_deletion_too():
    """OData JSON 4.01 writes a deleted entity as `@removed` with its `@id`
    (https://docs.oasis-open.org/odata/odata-json-format/v4.01/odata-json-format-v4.01.html#sec_DeletedEntity);
    Dataverse documents `$deletedEntity` (https://learn.microsoft.com/power-apps/developer/data-platform/
    use-change-tracking-synchronize-data-external-systems). Neither may be taken for a changed row."""
    delta = {
        "value": [{"@removed": {"reason": "deleted"}, "@id": "accounts(2e451703-c686-e711-80e5-00155db19e6d)"}],
        "@odata.deltaLink": "https://contoso.api.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=2",
    }
    recorder, transport = serve(lambda request: httpx.Response(200, json=delta))
    link = "https://contoso.api.crm.dynamics.com/api/data/v9.2/accounts?$deltatoken=1"
    with transport, open_client(dataverse_connection()) as client:
        [page] = list(client.read_changes("accounts", delta_link=link))

    assert page.rows == []
    assert page.deleted_ids == [UUID("2e451703-c686-e711-80e5-00155db19e6d")]


def test_dataverse_batch_responses_are_read_part_by_part_in_order():
    """A multipart answer as the documentation shows it: a created row (204) and a stale update (412)."""
    first, second = UUID(int=1), UUID(int=2)
    body = (
        "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json; odata.metadata=minimal\r\n"
        "OData-Version: 4.0\r\n\r\n"
        + json.dumps(
            {"@odata.etag": 'W/"2"', "accountid": str(first), "name": "Ok", "modifiedon": "2024-03-02T16:00:00Z"}
        )
        + "\r\n--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 412 Precondition Failed\r\n"
        "Content-Type: application/json; odata.metadata=minimal\r\n\r\n"
        '{"error":{"code":"0x80060882","message":"The version of the existing record doesn\'t match the RowVersion '
        'property provided."}}\r\n'
        "--batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f--\r\n"
    )

    def route(request):
        return httpx.Response(
            200,
            content=body.encode(),
            headers={"Content-Type": "multipart/mixed; boundary=batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f"},
        )

    recorder, transport = serve(route)
    operations = [
        WriteOperation("update", "accounts", "ok", {"name": "Ok"}, first, 'W/"1"'),
        WriteOperation("update", "accounts", "stale", {"name": "Late"}, second, 'W/"1"'),
    ]
    with transport, open_client(dataverse_connection()) as client:
        ok, stale = client.write_many(operations)

    assert ok.ok and ok.etag == 'W/"2"' and ok.modified_on == datetime(2024, 3, 2, 16, 0, tzinfo=UTC)
    assert not stale.ok and stale.error.kind == ErrorKind.CONFLICT and stale.error.remote_code == "0x80060882"
    sent = recorder.requests[-1]
    assert sent.headers["Prefer"] == "odata.continue-on-error"
    text = sent.content.decode()
    assert f"PATCH https://contoso.api.crm.dynamics.com/api/data/v9.2/accounts({first}) HTTP/1.1" in text
    assert 'If-Match: W/"1"' in text and "Prefer: return=representation" in text


def test_the_documented_dataverse_throttling_answer_is_waited_out(monkeypatch):
    from connectors import resilience

    waited = []
    monkeypatch.setattr(resilience, "sleep", waited.append)
    throttled = {
        "error": {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        }
    }
    answers = [
        httpx.Response(429, json=throttled, headers={"Retry-After": "7"}),
        httpx.Response(200, json=DATAVERSE_PAGE),
    ]
    _, transport = serve(lambda request: answers.pop(0))
    with transport, open_client(dataverse_connection()) as client:
        rows = [row for page in client.read_pages("accounts") for row in page.rows]
    assert len(rows) == 1 and waited == [7.0]


def test_a_dataverse_count_at_its_5000_cap_is_counted_page_by_page():
    rows = [{"accountid": str(UUID(int=i))} for i in range(5000)]

    def route(request):
        if request.url.params.get("$count") == "true":
            return httpx.Response(200, json={"@odata.count": 5000, "value": rows[:1], "@odata.nextLink": "x"})
        if "$skiptoken" in str(request.url):
            return httpx.Response(200, json={"value": rows[:1234]})
        next_link = "https://contoso.api.crm.dynamics.com/api/data/v9.2/accounts?$select=accountid&$skiptoken=p2"
        return httpx.Response(200, json={"value": rows, "@odata.nextLink": next_link})

    _, transport = serve(route)
    with transport, open_client(dataverse_connection()) as client:
        assert client.count("accounts", filter="statecode eq 0") == 6234
