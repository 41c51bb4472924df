"""The admin's "Test connection": authenticates, reads one row, and says plainly what is wrong."""

import socket
import threading
import uuid

import httpx
import pytest
from django.urls import reverse

from connectors.http import override_transport
from connectors.services import connection_test

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.mark.parametrize("kind", ["business_central", "dataverse"])
def test_a_working_connection_reports_success(sandbox_connection, kind):
    result = connection_test(connection=sandbox_connection(kind))
    assert result.ok, result.message
    assert "Connected" in result.message and "read 1 row(s)" in result.message


def test_bad_credentials_are_named(sandbox_connection):
    result = connection_test(connection=sandbox_connection("dataverse", client_secret="wrong-secret"))
    assert not result.ok
    assert result.message.startswith("Bad credentials")
    assert "wrong-secret" not in result.message


def test_an_unknown_company_is_named(sandbox_connection):
    company = uuid.uuid4()
    result = connection_test(connection=sandbox_connection("business_central", bc_company_id=company))
    assert not result.ok
    assert result.message.startswith("Unknown company") and str(company) in result.message


def test_a_missing_company_lists_the_companies_to_choose_from(sandbox_connection, sandbox):
    result = connection_test(connection=sandbox_connection("business_central", bc_company_id=None))
    assert not result.ok
    assert "no company is chosen" in result.message and str(sandbox.demo_company_id()) in result.message


def test_a_token_for_the_wrong_service_is_refused_plainly(sandbox_connection):
    connection = sandbox_connection("dataverse", scope="https://api.businesscentral.dynamics.com/.default")
    result = connection_test(connection=connection)
    assert not result.ok
    assert "Bad credentials for Dataverse" in result.message and "HTTP 401" in result.message


def test_missing_permission_is_named():
    from connectors.choices import ConnectionKind
    from connectors.models import Connection

    def forbid(request):
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})
        return httpx.Response(
            403,
            json={"error": {"code": "0x80040220", "message": "Principal user is missing prvReadAccount privilege."}},
        )

    connection = Connection.objects.create(
        kind=ConnectionKind.DATAVERSE,
        name="DV",
        environment_url="https://org.crm.dynamics.com",
        tenant="t",
        client_id="c",
    )
    connection.set_client_secret("secret")
    with override_transport(httpx.MockTransport(forbid)):
        result = connection_test(connection=connection)
    assert not result.ok
    assert result.message.startswith("Missing permission") and "prvReadAccount" in result.message


def network_connection(url: str, **fields):
    from connectors.choices import ConnectionKind
    from connectors.models import Connection

    connection = Connection.objects.create(
        kind=ConnectionKind.DATAVERSE,
        name=f"net {uuid.uuid4()}",
        environment_url=url,
        tenant="t",
        client_id="c",
        token_url=f"{url}/oauth2/v2.0/token",
        timeout_seconds=1,
        **fields,
    )
    connection.set_client_secret("secret")
    connection.save()
    return connection


def test_dns_failure_is_named():
    result = connection_test(connection=network_connection("https://syncadmin-test.invalid"))
    assert not result.ok
    assert "DNS lookup failed" in result.message and "syncadmin-test.invalid" in result.message


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a hung service, or plain TCP where TLS is expected)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_timeout_is_named(silent_server):
    result = connection_test(connection=network_connection(f"http://127.0.0.1:{silent_server}"))
    assert not result.ok
    assert "timed out" in result.message


def test_a_tls_failure_is_named():
    """An HTTPS URL pointing at a plain-HTTP server fails the TLS handshake."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_plain_http():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=answer_plain_http, daemon=True)
    thread.start()
    try:
        result = connection_test(connection=network_connection(f"https://127.0.0.1:{server.getsockname()[1]}"))
    finally:
        server.close()
    assert not result.ok
    assert "TLS handshake" in result.message


def test_the_admin_action_and_button_report_the_result(admin_client, sandbox_connection):
    good = sandbox_connection("business_central")
    bad = sandbox_connection("dataverse", client_secret="wrong-secret", name="broken dataverse")

    changelist = reverse("admin:connectors_connection_changelist")
    response = admin_client.post(
        changelist, {"action": "test_connections", "_selected_action": [good.pk, bad.pk]}, follow=True
    )
    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith(f"{good.name}: Connected") for m in messages)
    assert any(m.startswith("broken dataverse: Bad credentials") for m in messages)

    response = admin_client.post(reverse("admin:connectors_connection_test", args=[good.pk]), follow=True)
    assert any("Connected" in str(m) for m in response.context["messages"])
    page = admin_client.get(reverse("admin:connectors_connection_change", args=[good.pk])).content.decode()
    assert "Test connection" in page
    assert "wrong-secret" not in response.content.decode() + page
