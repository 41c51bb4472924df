"""The client secret goes in through the admin, is stored encrypted, and never comes back out: not in pages, logs
or errors."""

import logging
import uuid

import httpx
import pytest
from django.urls import reverse

from connectors.auth import clear_token_cache
from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.http import override_transport
from connectors.models import Connection
from connectors.secrets import SecretUnreadable
from connectors.services import connection_save_secret, connection_test
from connectors.types import ConnectorError, WriteOperation

SECRET = "Very-Secret-Value-7f3a9c"


def form_data(**overrides):
    data = {
        "kind": ConnectionKind.BUSINESS_CENTRAL,
        "name": "Business Central",
        "enabled": "on",
        "environment_url": "https://api.businesscentral.dynamics.com",
        "tenant": "contoso.onmicrosoft.com",
        "bc_environment": "production",
        "bc_company_id": "",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret": SECRET,
        "client_secret_reference": "",
        "token_url": "",
        "scope": "",
        "page_size": "5000",
        "batch_size": "100",
        "timeout_seconds": "60",
        "max_concurrency": "4",
        # The inline of further app registrations, left empty.
        "app_registrations-TOTAL_FORMS": "0",
        "app_registrations-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def _fresh_tokens():
    clear_token_cache()
    yield
    clear_token_cache()


@pytest.mark.django_db
def test_the_admin_stores_the_secret_encrypted_and_never_renders_it(admin_client):
    response = admin_client.post(reverse("admin:connectors_connection_add"), form_data())
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get()
    assert connection.client_secret == SECRET
    assert SECRET not in connection.client_secret_encrypted

    pages = [
        reverse("admin:connectors_connection_changelist"),
        reverse("admin:connectors_connection_change", args=[connection.pk]),
        reverse("admin:connectors_connection_history", args=[connection.pk]),
    ]
    for url in pages:
        body = admin_client.get(url).content.decode()
        assert SECRET not in body, url
        assert connection.client_secret_encrypted not in body, url
    change_page = admin_client.get(pages[1]).content.decode()
    assert 'type="password"' in change_page and "stored (encrypted)" in change_page


@pytest.mark.django_db
def test_a_blank_secret_keeps_the_stored_one_and_a_new_one_replaces_it(admin_client):
    admin_client.post(reverse("admin:connectors_connection_add"), form_data())
    connection = Connection.objects.get()
    change_url = reverse("admin:connectors_connection_change", args=[connection.pk])

    response = admin_client.post(change_url, form_data(client_secret="", page_size="1000"))
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.page_size == 1000 and connection.client_secret == SECRET

    admin_client.post(change_url, form_data(client_secret="a-new-secret"))
    connection.refresh_from_db()
    assert connection.client_secret == "a-new-secret"


@pytest.mark.django_db
def test_a_failed_form_does_not_echo_the_secret(admin_client):
    response = admin_client.post(reverse("admin:connectors_connection_add"), form_data(bc_environment=""))
    assert response.status_code == 200  # the form is shown again with the error
    body = response.content.decode()
    assert "need the environment name" in body
    assert SECRET not in body


@pytest.mark.django_db
def test_a_new_connection_needs_a_secret_or_a_reference(admin_client):
    response = admin_client.post(reverse("admin:connectors_connection_add"), form_data(client_secret=""))
    assert "Enter the client secret" in response.content.decode()
    assert not Connection.objects.exists()


@pytest.mark.django_db
def test_the_secret_can_be_read_from_an_environment_variable_or_a_file(monkeypatch, tmp_path):
    connection = Connection.objects.create(
        kind=ConnectionKind.DATAVERSE,
        name="DV",
        environment_url="https://x.crm.dynamics.com",
        tenant="t",
        client_id="c",
    )
    monkeypatch.setenv("DV_SECRET_FOR_TEST", "from-the-environment")
    connection_save_secret(connection=connection, reference="env:DV_SECRET_FOR_TEST")
    assert Connection.objects.get().client_secret == "from-the-environment"

    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    connection_save_secret(connection=connection, reference=f"file:{secret_file}")
    assert Connection.objects.get().client_secret == "from-a-file"

    connection_save_secret(connection=connection, reference="env:NOT_SET_ANYWHERE_12345")
    with pytest.raises(SecretUnreadable, match="NOT_SET_ANYWHERE_12345 holding the client secret is not set"):
        Connection.objects.get().client_secret  # noqa: B018
    result = connection_test(connection=Connection.objects.get())
    assert not result.ok and "is not set" in result.message
    with pytest.raises(ValueError):
        connection_save_secret(connection=connection, reference="vault:somewhere")


@pytest.mark.django_db
def test_no_log_line_or_error_carries_the_secret_or_the_token(caplog):
    """The token endpoint echoes everything it got back (a worst case); we still never show the secret."""
    token = "eyJ-the-access-token-value"

    def echo(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": token})
        echoed = request.headers.get("Authorization", "") + " " + request.content.decode()
        return httpx.Response(400, json={"error": {"code": "BadRequest", "message": f"{echoed} {SECRET}"}})

    connection = Connection(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name="BC",
        environment_url="https://api.businesscentral.dynamics.com",
        tenant="t",
        bc_environment="production",
        bc_company_id="70c0c603-f4f9-ef11-9344-6045bdc8c234",
        client_id="c",
    )
    connection.set_client_secret(SECRET)
    caplog.set_level(logging.DEBUG)
    with override_transport(httpx.MockTransport(echo)), open_client(connection) as client:
        with pytest.raises(ConnectorError) as caught:
            list(client.read_pages("customers"))
        result = connection_test(connection=connection)

    shown = [str(caught.value), caught.value.detail(), result.message, caplog.text, repr(client), repr(connection)]
    for text in shown:
        assert SECRET not in text
        assert token not in text


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_a_whole_session_logs_neither_the_secret_nor_the_token(sandbox_connection, caplog, sleeps):
    """Token fetch, reads, writes, a retry after a fault and a 401 renewal, with every logger at DEBUG."""
    from sandbox import testing

    caplog.set_level(logging.DEBUG)
    connection = sandbox_connection("dataverse")
    with open_client(connection) as client:
        rows = [row for page in client.read_pages("accounts") for row in page.rows]
        testing.inject_faults("503", 1)
        testing.expire_tokens()
        client.write_many(
            [WriteOperation("update", "accounts", "u", {"name": "Logged"}, uuid.UUID(rows[0]["accountid"]))]
        )
        token = client.tokens.current()
        connection_test(connection=connection)

    assert caplog.text  # something was logged
    assert connection.client_secret not in caplog.text and token not in caplog.text
