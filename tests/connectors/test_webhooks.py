"""Webhook subscription management: Business Central subscriptions created, renewed and deleted over the API."""

import httpx
import pytest

from connectors.clients import open_client
from connectors.types import ConnectorError

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

RECEIVER = "https://syncadmin.example/webhooks/bc"


@pytest.fixture
def receiver(monkeypatch):
    """Our notification endpoint as the sandbox reaches it: it echoes the validation token, as it must."""
    from sandbox import webhooks

    handshakes = []

    def answer(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("validationToken")
        handshakes.append(str(request.url.copy_with(query=None)))
        return httpx.Response(200, text=token or "")

    monkeypatch.setattr(webhooks, "transport", httpx.MockTransport(answer))
    return handshakes


def test_a_bc_subscription_is_created_renewed_listed_and_deleted(bc_connection, receiver):
    with open_client(bc_connection) as client:
        created = client.subscription_create(
            entity_set="customers", notification_url=RECEIVER, client_state="shared-state-42"
        )
        renewed = client.subscription_renew(created)
        listed = client.subscriptions()
        client.subscription_delete(renewed)
        after = client.subscriptions()

    assert created.id and created.resource.endswith(f"companies({bc_connection.bc_company_id})/customers")
    assert created.expires_at is not None and created.client_state == "shared-state-42"
    assert "shared-state-42" not in repr(created)
    assert renewed.etag != created.etag and renewed.expires_at >= created.expires_at
    assert [s.id for s in listed] == [created.id]
    assert after == []
    assert receiver == [RECEIVER, RECEIVER]  # one handshake to create, one to renew
    assert client.request_counts["webhook"] == 5


def test_a_subscription_whose_endpoint_fails_the_handshake_is_refused(bc_connection, monkeypatch):
    from sandbox import webhooks

    monkeypatch.setattr(webhooks, "transport", httpx.MockTransport(lambda request: httpx.Response(404)))
    with open_client(bc_connection) as client, pytest.raises(ConnectorError) as caught:
        client.subscription_create(entity_set="customers", notification_url=RECEIVER)
    assert caught.value.status == 400 and "not validated" in caught.value.message


def test_a_dataverse_webhook_is_registered_as_an_endpoint_with_one_step_per_message(monkeypatch):
    """Dataverse registers webhooks as `serviceendpoints` + `sdkmessageprocessingsteps` rows (documented shapes)."""
    import json
    import uuid

    from connectors.choices import ConnectionKind
    from connectors.http import override_transport
    from connectors.models import Connection

    created, deleted = [], []

    def service(request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/", 1)[-1]
        if path == "token":
            return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"})
        if request.method == "POST":
            body = json.loads(request.content)
            created.append((path, body))
            key = "serviceendpointid" if path == "serviceendpoints" else "sdkmessageprocessingstepid"
            return httpx.Response(201, json={**body, key: str(uuid.uuid4())})
        if request.method == "DELETE":
            deleted.append(path.split("(")[0])
            return httpx.Response(204)
        key = {"sdkmessages": "sdkmessageid", "sdkmessagefilters": "sdkmessagefilterid"}[path]
        return httpx.Response(200, json={"value": [{key: str(uuid.uuid4())}]})

    connection = Connection(
        kind=ConnectionKind.DATAVERSE,
        name="DV",
        environment_url="https://org.crm.dynamics.com",
        tenant="t",
        client_id="c",
    )
    connection.set_client_secret("secret")
    with override_transport(httpx.MockTransport(service)), open_client(connection) as client:
        webhook = client.webhook_create(
            entity_set="accounts",
            url="https://syncadmin.example/webhooks/dataverse",
            header_name="x-syncadmin-key",
            header_value="k<&>",
        )
        client.webhook_delete(webhook)

    endpoint = created[0][1]
    assert created[0][0] == "serviceendpoints" and endpoint["contract"] == 8 and endpoint["authtype"] == 5
    assert endpoint["authvalue"] == '<settings><setting name="x-syncadmin-key" value="k&lt;&amp;&gt;" /></settings>'
    steps = [body for path, body in created if path == "sdkmessageprocessingsteps"]
    assert [s["name"].rsplit(": ", 1)[1] for s in steps] == ["Create", "Update", "Delete"]
    assert all(s["stage"] == 40 and s["mode"] == 1 for s in steps)
    assert all(
        s["eventhandler_serviceendpoint@odata.bind"] == f"/serviceendpoints({webhook.endpoint_id})" for s in steps
    )
    assert deleted == ["sdkmessageprocessingsteps"] * 3 + ["serviceendpoints"]
