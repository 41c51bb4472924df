"""A broken or hostile server: links to other hosts, looping next links, answers of the wrong shape.

The server here is a real HTTP server on a loopback port that answers like a Business Central whose proxy, or whose
owner, misbehaves. Each answer must become a classified error that says what came back; no token may ever reach a
host other than the connection's own, and no run may loop for ever or read a wrong answer as an empty table.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.http import override_transport
from connectors.models import Connection
from connectors.types import ConnectorError, ErrorKind

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

COMPANY = uuid.uuid4()
CUSTOMERS_PATH = f"/v2.0/tenant/production/api/v2.0/companies({COMPANY})/customers"


class Server:
    """A loopback HTTP server: a token endpoint, and for GETs the answer set for the path (or a default one)."""

    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization header
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # the token endpoint
                server.requests.append(("POST", self.path, self.headers.get("Authorization", "")))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token = {"access_token": "hostile-test-token", "token_type": "Bearer", "expires_in": 3600}
                self._answer(200, "application/json", json.dumps(token).encode())

            def do_GET(self):
                server.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
                path = self.path.split("?")[0]
                status, content_type, body = server.answers.get(path, (200, "application/json", b'{"value": []}'))
                self._answer(status, content_type, body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, body, *, status: int = 200, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[path] = (status, content_type, raw)

    def gets(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "GET"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


@pytest.fixture
def other_server():
    running = Server()
    yield running
    running.close()


@pytest.fixture
def connection(server):
    connection = Connection(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name="Hostile Business Central",
        environment_url=server.url,
        tenant="tenant",
        bc_environment="production",
        bc_company_id=COMPANY,
        client_id="client",
        token_url=f"{server.url}/token",
        timeout_seconds=5,
    )
    connection.set_client_secret("hostile-test-secret")
    connection.save()
    return connection


def read_all(connection) -> list[dict]:
    rows = []
    with open_client(connection) as client:
        for number, page in enumerate(client.read_pages("customers"), start=1):
            if number > 20:  # so that a connector that loops fails this test instead of hanging the suite
                pytest.fail("The connector kept following next links: it would loop for ever.")
            rows += page.rows
    return rows


def refusal(connection) -> ConnectorError:
    with pytest.raises(ConnectorError) as raised:
        read_all(connection)
    assert raised.value.kind == ErrorKind.MALFORMED_ANSWER
    return raised.value


def test_a_next_link_to_another_host_is_refused_and_that_host_is_sent_nothing(server, other_server, connection):
    stolen = f"{other_server.url}{CUSTOMERS_PATH}?$skiptoken=2"
    server.answer(CUSTOMERS_PATH, {"value": [{"id": str(uuid.uuid4())}], "@odata.nextLink": stolen})

    error = refusal(connection)

    assert other_server.requests == []  # not the bearer token, not even a connection attempt's request
    assert f"a link to another server ({other_server.url})" in error.message
    assert "follows links only to 127.0.0.1" in error.message


def test_a_next_link_on_the_same_host_but_another_port_or_scheme_is_refused_too(server, connection):
    https = server.url.replace("http://", "https://") + CUSTOMERS_PATH
    server.answer(CUSTOMERS_PATH, {"value": [], "@odata.nextLink": https})

    error = refusal(connection)

    assert "a link to another server (https://127.0.0.1" in error.message
    assert server.gets() == [CUSTOMERS_PATH]


def test_a_next_link_that_points_to_itself_fails_instead_of_looping_for_ever(server, connection):
    page_two = f"{CUSTOMERS_PATH}2"
    server.answer(CUSTOMERS_PATH, {"value": [], "@odata.nextLink": f"{server.url}{page_two}"})
    server.answer(page_two, {"value": [], "@odata.nextLink": f"{server.url}{page_two}"})

    error = refusal(connection)

    assert "a next link it had already given" in error.message and "a loop" in error.message
    assert [path.split("?")[0] for path in server.gets()] == [CUSTOMERS_PATH, page_two]


def test_a_next_link_that_does_not_parse_is_a_clear_error(server, connection):
    server.answer(CUSTOMERS_PATH, {"value": [], "@odata.nextLink": "http://[::1"})

    assert "a link that is not a URL" in refusal(connection).message


def test_a_next_link_that_is_not_text_is_a_clear_error(server, connection):
    server.answer(CUSTOMERS_PATH, {"value": [], "@odata.nextLink": {"href": "elsewhere"}})

    assert "an @odata.nextLink that is not a URL" in refusal(connection).message


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (
            "text/html",
            b"<html><body>Sign in to continue</body></html>",
            "Business Central answered with an HTML page, not an OData collection (status 200, 'text/html')",
        ),
        (
            "application/json",
            b'{"value": [',
            "Business Central answered with a body that is not JSON, not an OData collection "
            "(status 200, 'application/json')",
        ),
        ("application/json", b"null", "Business Central answered with null, not an OData collection"),
        ("application/json", b"[1, 2]", "Business Central answered with a JSON list, not an OData collection"),
        (
            "application/json",
            b'{"@odata.context": "$metadata#customers"}',
            "Business Central answered with a JSON object without 'value', not an OData collection",
        ),
        (
            "application/json",
            b'{"value": {"id": 1}}',
            "Business Central answered with a JSON object whose 'value' is not a list",
        ),
        ("application/json", b'{"value": [1, 2]}', "a collection whose rows are not all JSON objects"),
    ],
)
def test_an_answer_of_the_wrong_shape_is_a_classified_error_that_says_what_came_back(
    server, connection, content_type, body, expected
):
    server.answer(CUSTOMERS_PATH, body, content_type=content_type)

    error = refusal(connection)

    assert expected in error.message
    assert "Nothing was read from it" in error.message
    assert "hostile-test-token" not in error.message + error.response_excerpt


def test_a_count_on_an_answer_without_value_is_an_error_not_zero(server, connection):
    server.answer(CUSTOMERS_PATH, {"@odata.count": 0})

    with open_client(connection) as client, pytest.raises(ConnectorError) as raised:
        client.count("customers")

    assert "without 'value'" in raised.value.message


def test_a_well_formed_answer_on_the_connections_own_host_is_read_to_the_last_page(server, connection):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    server.answer(CUSTOMERS_PATH, {"value": [{"id": first}], "@odata.nextLink": f"{server.url}{CUSTOMERS_PATH}2"})
    server.answer(f"{CUSTOMERS_PATH}2", {"value": [{"id": second}]})

    assert [row["id"] for row in read_all(connection)] == [first, second]
    assert all(auth == "Bearer hostile-test-token" for method, _, auth in server.requests if method == "GET")


@pytest.mark.django_db(databases=["default", "sandbox"])
class ByHost(httpx.BaseTransport):
    """The in-process sandbox for `testserver`, a real socket for the loopback server."""

    def __init__(self, sandbox: httpx.BaseTransport):
        self.sandbox, self.socket = sandbox, httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return (self.sandbox if request.url.host == "testserver" else self.socket).handle_request(request)


def test_a_run_whose_source_answers_without_value_fails_with_the_reason_and_writes_nothing(
    server, sandbox_http, sandbox_connections
):
    from jobs.choices import JobStatus
    from jobs.models import SyncJob
    from jobs.services import sync_jobs_create, sync_jobs_run
    from mappings.models import TableMapping

    customer = TableMapping.objects.get(name="CUSTOMER")
    customer.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    customer.sync_only_coupled = False  # so that a run that read nothing would not look like one that may not create
    customer.save()

    bc, dataverse = sandbox_connections
    bc.environment_url, bc.token_url, bc.tenant = server.url, f"{server.url}/token", "tenant"
    bc.bc_environment, bc.bc_company_id = "production", COMPANY
    bc.save()
    server.answer(CUSTOMERS_PATH, {"@odata.context": "$metadata#customers"})  # a proxy's idea of an empty table
    with open_client(dataverse) as client:
        accounts_before = client.count("accounts")

    (job,) = sync_jobs_create(mapping=customer, direction="to_dataverse")
    with override_transport(ByHost(sandbox_http)):
        sync_jobs_run(job_ids=[job.pk])

    job = SyncJob.objects.get(pk=job.pk)
    assert job.status == JobStatus.FAILED
    assert "Business Central answered with a JSON object without 'value'" in job.message
    assert not customer.couplings.exists()
    with open_client(dataverse) as client:
        assert client.count("accounts") == accounts_before
    # The run let go of the mapping: the next one starts at once.
    (again,) = sync_jobs_create(mapping=customer, direction="to_dataverse")
    with override_transport(ByHost(sandbox_http)):
        sync_jobs_run(job_ids=[again.pk], lock_wait=0)
    assert "in progress" not in SyncJob.objects.get(pk=again.pk).message
