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
from connectors.models import AppRegistration, Connection
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


@pytest.mark.django_db
def test_a_further_app_registration_is_added_inline_its_secret_encrypted_and_never_shown(admin_client, caplog):
    admin_client.post(reverse("admin:connectors_connection_add"), form_data())
    connection = Connection.objects.get()
    change_url = reverse("admin:connectors_connection_change", args=[connection.pk])
    second_secret = "the-second-registrations-secret"  # noqa: S105
    data = form_data(client_secret="")
    data.update(
        {
            "app_registrations-TOTAL_FORMS": "1",
            "app_registrations-0-client_id": "22222222-3333-4444-5555-666666666666",
            "app_registrations-0-client_secret": second_secret,
            "app_registrations-0-enabled": "on",
        }
    )

    response = admin_client.post(change_url, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    registration = AppRegistration.objects.get(connection=connection)
    assert registration.client_secret == second_secret
    assert second_secret not in registration.client_secret_encrypted
    page = admin_client.get(change_url).content.decode()
    assert second_secret not in page and registration.client_secret_encrypted not in page
    assert "22222222-3333-4444-5555-666666666666" in page and "stored (encrypted)" in page
    assert second_secret not in repr(registration) and second_secret not in caplog.text

    # Left blank, the stored secret stays; a registration without any secret is refused.
    data["app_registrations-INITIAL_FORMS"] = "1"
    data["app_registrations-0-id"] = str(registration.pk)
    data["app_registrations-0-connection"] = str(connection.pk)
    data["app_registrations-0-client_secret"] = ""
    assert admin_client.post(change_url, data).status_code == 302
    assert AppRegistration.objects.get().client_secret == second_secret
    data.update(
        {
            "app_registrations-TOTAL_FORMS": "2",
            "app_registrations-1-client_id": "33333333-3333-4444-5555-666666666666",
            "app_registrations-1-client_secret": "",
        }
    )
    response = admin_client.post(change_url, data)
    assert response.status_code == 200
    assert "Enter the client secret of this app registration" in response.content.decode()
    assert AppRegistration.objects.count() == 1


def _user_with(django_user_model, username, *codenames):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="connectors", codename__in=codenames))
    return user


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("codenames", "status"),
    [
        # Viewing a connection is no licence to add its credentials: the whole change is refused.
        (("view_connection", "view_appregistration"), 403),
        # Editing a connection without the right to add app registrations saves the connection, never the inline.
        (("view_connection", "change_connection", "view_appregistration"), 302),
    ],
    ids=["viewer", "connection-editor-without-add-appregistration"],
)
def test_an_app_registration_cannot_be_added_inline_without_its_add_permission(
    admin_client, client, django_user_model, codenames, status
):
    admin_client.post(reverse("admin:connectors_connection_add"), form_data())
    connection = Connection.objects.get()
    client.force_login(_user_with(django_user_model, "limited", *codenames))
    data = form_data(client_secret="")
    data.update(
        {
            "app_registrations-TOTAL_FORMS": "1",
            "app_registrations-0-client_id": "22222222-3333-4444-5555-666666666666",
            "app_registrations-0-client_secret": "smuggled-secret",
            "app_registrations-0-enabled": "on",
        }
    )

    response = client.post(reverse("admin:connectors_connection_change", args=[connection.pk]), data)

    assert response.status_code == status, response.content.decode()[:2000]
    assert not AppRegistration.objects.exists()
    page = client.get(reverse("admin:connectors_connection_change", args=[connection.pk])).content.decode()
    assert "Add another further app registration" not in page
