"""Outgoing webhooks delivered for real to a receiver on a local socket: BC subscriptions (handshake, clientState,
expiry, renewal, coalescing, collection, retry rules) and Dataverse RemoteExecutionContext posts."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from sandbox import testing, webhooks
from sandbox.models import Notification

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


class Receiver:
    """A real HTTP endpoint: echoes validation tokens and answers notifications with `status`."""

    def __init__(self):
        self.calls = []
        self.status = 202
        self.echo_token = True
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = parse_qs(urlparse(self.path).query)
                receiver.calls.append({"query": query, "headers": dict(self.headers), "body": body})
                if "validationToken" in query:
                    status = 200 if receiver.echo_token else 400
                    payload = query["validationToken"][0].encode() if receiver.echo_token else b"no"
                else:
                    status, payload = receiver.status, b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notifications(self):
        return [json.loads(c["body"]) for c in self.calls if "validationToken" not in c["query"]]


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setattr(webhooks, "AUTO_DELIVER", False)  # the test delivers with deliver_due()
    r = Receiver()
    yield r
    r.server.shutdown()


def subscribe(bc, company_id, receiver, client_state="s3cret"):
    return bc.post(
        "subscriptions",
        json={
            "notificationUrl": receiver.url,
            "resource": f"/api/v2.0/companies({company_id})/customers",
            "clientState": client_state,
        },
    )


def test_subscription_needs_the_validation_handshake(bc, company_id, receiver):
    response = subscribe(bc, company_id, receiver)
    assert response.status_code == 201
    sub = response.json()
    assert "validationToken" in receiver.calls[0]["query"]
    assert sub["clientState"] == "s3cret" and sub["notificationUrl"] == receiver.url
    expires = datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00"))
    assert timedelta(days=2, hours=23) < expires - datetime.now(UTC) <= timedelta(days=3)
    assert [s["subscriptionId"] for s in bc.get("subscriptions").json()["value"]] == [sub["subscriptionId"]]
    receiver.echo_token = False
    refused = subscribe(bc, company_id, receiver)
    assert refused.status_code == 400
    assert len(bc.get("subscriptions").json()["value"]) == 1


def test_changes_are_notified_after_the_delay_coalesced(bc, company_id, receiver):
    testing.set_webhook_timing(bc_delay=30)
    sub = subscribe(bc, company_id, receiver).json()
    created = bc.post(f"companies({company_id})/customers", json={"displayName": "Hooked"}).json()
    bc.patch(f"companies({company_id})/customers({created['id']})", json={"city": "Oslo"}, headers={"If-Match": "*"})
    bc.delete(f"companies({company_id})/customers({created['id']})")
    webhooks.deliver_due()
    assert receiver.notifications() == []  # still inside the coalescing window
    webhooks.deliver_due(now=time.time() + 31)
    [payload] = receiver.notifications()
    changes = [(v["changeType"], v["resource"]) for v in payload["value"]]
    resource = f"/api/v2.0/companies({company_id})/customers({created['id']})"
    assert changes == [("created", resource), ("updated", resource), ("deleted", resource)]
    assert all(v["clientState"] == "s3cret" and v["subscriptionId"] == sub["subscriptionId"] for v in payload["value"])


def test_many_changes_become_one_collection_notification(bc, company_id, receiver):
    testing.set_webhook_timing(bc_delay=0, collection_threshold=2)
    subscribe(bc, company_id, receiver)
    for name in ("a", "b", "c"):
        bc.post(f"companies({company_id})/customers", json={"displayName": name})
    webhooks.deliver_due()
    [payload] = receiver.notifications()
    [item] = payload["value"]
    assert item["changeType"] == "collection"
    assert item["resource"].startswith(f"/api/v2.0/companies({company_id})/customers?$filter=lastModifiedDateTime")


def test_vendors_and_other_supported_resources_only(bc, company_id, receiver):
    ok = bc.post(
        "subscriptions",
        json={"notificationUrl": receiver.url, "resource": f"/api/v2.0/companies({company_id})/vendors"},
    )
    assert ok.status_code == 201
    contacts = bc.post(
        "subscriptions",
        json={"notificationUrl": receiver.url, "resource": f"/api/v2.0/companies({company_id})/contacts"},
    )
    assert contacts.status_code == 400  # not in the webhook-supported list


def test_retries_only_on_408_429_5xx_and_other_answers_delete(bc, company_id, receiver):
    testing.set_webhook_timing(bc_delay=0)
    subscribe(bc, company_id, receiver)
    receiver.status = 503
    bc.post(f"companies({company_id})/customers", json={"displayName": "Retry me"})
    webhooks.deliver_due()
    assert len(receiver.notifications()) == 1
    assert Notification.objects.using("sandbox").count() == 1  # queued again for later
    assert len(bc.get("subscriptions").json()["value"]) == 1
    receiver.status = 404
    webhooks.deliver_due(now=time.time() + 3600)
    assert len(receiver.notifications()) == 2
    assert bc.get("subscriptions").json()["value"] == []


def test_renew_with_handshake_and_delete(bc, company_id, receiver):
    sub = subscribe(bc, company_id, receiver).json()
    url = f"subscriptions('{sub['subscriptionId']}')"
    assert bc.patch(url, json={"clientState": "new"}).status_code == 400  # If-Match required
    handshakes = len(receiver.calls)
    renewed = bc.patch(url, json={"clientState": "new"}, headers={"If-Match": sub["@odata.etag"]})
    assert renewed.status_code == 200
    assert len(receiver.calls) == handshakes + 1
    assert renewed.json()["clientState"] == "new"
    assert renewed.json()["expirationDateTime"] >= sub["expirationDateTime"]
    assert bc.delete(url, headers={"If-Match": sub["@odata.etag"]}).status_code == 409  # stale
    assert bc.delete(url, headers={"If-Match": renewed.json()["@odata.etag"]}).status_code == 204
    assert bc.get("subscriptions").json()["value"] == []


def test_rolled_back_batch_notifies_nobody(bc, company_id, receiver):
    testing.set_webhook_timing(bc_delay=0)
    subscribe(bc, company_id, receiver)
    bc.post(
        "$batch",
        json={
            "requests": [
                {
                    "id": "1",
                    "method": "POST",
                    "url": f"companies({company_id})/customers",
                    "body": {"displayName": "x"},
                },
                {"id": "2", "method": "POST", "url": f"companies({company_id})/customers", "body": {}},
            ]
        },
        headers={"Isolation": "snapshot"},
    )
    webhooks.deliver_due()
    assert receiver.notifications() == []


def test_dataverse_webhook_posts_remote_execution_context(dv, seeded, receiver):
    testing.register_dataverse_webhook(
        url=receiver.url, entity_set="accounts", header_name="x-sandbox-secret", header_value="hush"
    )
    created = dv.post("accounts", json={"name": "Hooked account", "customertypecode": 3})
    account_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    dv.patch(f"accounts({account_id})", json={"telephone1": "555"})
    dv.delete(f"accounts({account_id})")
    dv.post("contacts", json={"lastname": "Not hooked"})
    webhooks.deliver_due()
    calls = [c for c in receiver.calls if "validationToken" not in c["query"]]
    assert [c["headers"]["x-ms-dynamics-request-name"] for c in calls] == ["Create", "Update", "Delete"]
    assert all(c["headers"]["x-sandbox-secret"] == "hush" for c in calls)
    assert all(c["headers"]["x-ms-dynamics-entity-name"] == "account" for c in calls)
    create, update, delete = (json.loads(c["body"]) for c in calls)
    assert create["MessageName"] == "Create" and create["PrimaryEntityName"] == "account"
    assert create["PrimaryEntityId"] == account_id and create["Stage"] == 40
    target = create["InputParameters"][0]["value"]
    assert target["__type"].startswith("Entity:") and target["LogicalName"] == "account"
    attributes = {a["key"]: a["value"] for a in target["Attributes"]}
    assert attributes["name"] == "Hooked account"
    assert attributes["customertypecode"]["Value"] == 3
    assert attributes["modifiedon"].startswith("/Date(")
    assert create["OutputParameters"] == [{"key": "id", "value": account_id}]
    update_attributes = {a["key"] for a in update["InputParameters"][0]["value"]["Attributes"]}
    assert "telephone1" in update_attributes and "name" not in update_attributes
    assert delete["InputParameters"][0]["value"]["LogicalName"] == "account"


def test_bc_gives_up_after_36_hours_of_retries(bc, company_id, receiver):
    testing.set_webhook_timing(bc_delay=0)
    subscribe(bc, company_id, receiver)
    receiver.status = 500
    bc.post(f"companies({company_id})/customers", json={"displayName": "Never delivered"})
    webhooks.deliver_due()
    Notification.objects.using("sandbox").update(attempts=36 * 60)
    webhooks.deliver_due(now=time.time() + 3600)
    assert Notification.objects.using("sandbox").count() == 0
    assert len(bc.get("subscriptions").json()["value"]) == 1  # the subscription itself stays


def test_dataverse_retries_once_on_503_only(dv, seeded, receiver):
    testing.register_dataverse_webhook(url=receiver.url, entity_set="accounts", messages=["Create"])
    receiver.status = 503
    dv.post("accounts", json={"name": "Retried once"})
    webhooks.deliver_due()
    webhooks.deliver_due(now=time.time() + 5)
    webhooks.deliver_due(now=time.time() + 10)
    assert len(receiver.notifications()) == 2
    receiver.status = 400
    dv.post("accounts", json={"name": "Not retried"})
    webhooks.deliver_due(now=time.time() + 20)
    webhooks.deliver_due(now=time.time() + 30)
    assert len(receiver.notifications()) == 3


def _register_over_the_web_api(dv, url, *, table="account", messages=("Create", "Update", "Delete"), **endpoint):
    """What the Plug-in Registration Tool does: a webhook service endpoint, then one step per message."""
    body = {
        "name": "receiver",
        "url": url,
        "contract": 8,
        "authtype": 5,
        "authvalue": '<settings><setting name="x-sandbox-secret" value="hush" /></settings>',
        **endpoint,
    }
    created = dv.post("serviceendpoints", json=body)
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["serviceendpointid"]
    steps = []
    for message in messages:
        message_id = dv.get("sdkmessages", params={"$filter": f"name eq '{message}'"}).json()["value"][0]
        filter_row = dv.get(
            "sdkmessagefilters",
            params={
                "$filter": f"_sdkmessageid_value eq {message_id['sdkmessageid']} and primaryobjecttypecode eq '{table}'"
            },
        ).json()["value"][0]
        step = dv.post(
            "sdkmessageprocessingsteps",
            json={
                "name": f"receiver: {message}",
                "mode": 1,
                "stage": 40,
                "rank": 1,
                "sdkmessageid@odata.bind": f"/sdkmessages({message_id['sdkmessageid']})",
                "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_row['sdkmessagefilterid']})",
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
            },
        )
        assert step.status_code == 201, step.text
        steps.append(step.json()["sdkmessageprocessingstepid"])
    return endpoint_id, steps


def test_a_webhook_registered_over_the_web_api_is_called_with_its_auth_header_for_each_registered_message(
    dv, seeded, receiver
):
    """Registering a webhook as Microsoft documents it (serviceendpoint with contract Webhook, authtype HttpHeader
    and authvalue settings; sdkmessageprocessingsteps per message of the table), then changing rows: each change of a
    registered message is posted to the URL with the header; a message without a step is not.
    https://learn.microsoft.com/power-apps/developer/data-platform/register-web-hooks
    https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks"""
    endpoint_id, steps = _register_over_the_web_api(dv, receiver.url, messages=("Create", "Update"))
    listed = dv.get("serviceendpoints", params={"$filter": "contract eq 8"}).json()["value"]
    assert [(e["serviceendpointid"], e["url"], e["authtype"]) for e in listed] == [(endpoint_id, receiver.url, 5)]
    assert "authvalue" not in listed[0]  # write-only: the secret is not read back
    by_endpoint = dv.get("sdkmessageprocessingsteps", params={"$filter": f"_eventhandler_value eq {endpoint_id}"})
    assert sorted(s["sdkmessageprocessingstepid"] for s in by_endpoint.json()["value"]) == sorted(steps)

    created = dv.post("accounts", json={"name": "Registered account", "customertypecode": 3})
    account_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    dv.patch(f"accounts({account_id})", json={"telephone1": "555"})
    dv.delete(f"accounts({account_id})")  # no Delete step: not posted
    webhooks.deliver_due()

    calls = receiver.calls
    assert [c["headers"]["x-ms-dynamics-request-name"] for c in calls] == ["Create", "Update"]
    assert all(c["headers"]["x-sandbox-secret"] == "hush" for c in calls)
    bodies = [json.loads(c["body"]) for c in calls]
    assert [b["PrimaryEntityId"] for b in bodies] == [account_id, account_id]
    assert {b["OwningExtension"]["Id"] for b in bodies} <= set(steps)

    # Unregistering: the endpoint is refused while steps use it; steps first, then the endpoint.
    assert dv.delete(f"serviceendpoints({endpoint_id})").status_code == 400
    for step in steps:
        assert dv.delete(f"sdkmessageprocessingsteps({step})").status_code == 204
    assert dv.delete(f"serviceendpoints({endpoint_id})").status_code == 204
    dv.post("accounts", json={"name": "After unregistering", "customertypecode": 3})
    webhooks.deliver_due()
    assert len(receiver.calls) == 2


@pytest.mark.parametrize(
    "endpoint, step, refusal",
    [
        ({"authvalue": ""}, {}, "authentication value"),
        ({"authvalue": "hush"}, {}, "<settings>"),
        ({"authtype": 9}, {}, "authtype"),
        ({"url": "not a url"}, {}, "absolute URL"),
        ({}, {"mode": 1, "stage": 20}, "PostOperation"),
    ],
)
def test_a_webhook_registration_dataverse_refuses_is_refused(dv, seeded, receiver, endpoint, step, refusal):
    """An HttpHeader webhook needs its settings as authvalue; an asynchronous step only runs PostOperation.
    https://learn.microsoft.com/power-apps/developer/data-platform/register-web-hooks
    https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks"""
    body = {
        "name": "receiver",
        "url": receiver.url,
        "contract": 8,
        "authtype": 5,
        "authvalue": '<settings><setting name="x" value="y" /></settings>',
        **endpoint,
    }
    created = dv.post("serviceendpoints", json=body)
    if not step:
        assert created.status_code == 400 and refusal in created.json()["error"]["message"]
        assert dv.get("serviceendpoints").json()["value"] == []
        return
    message_id = dv.get("sdkmessages", params={"$filter": "name eq 'Update'"}).json()["value"][0]["sdkmessageid"]
    filter_id = dv.get(
        "sdkmessagefilters",
        params={"$filter": f"_sdkmessageid_value eq {message_id} and primaryobjecttypecode eq 'account'"},
    ).json()["value"][0]["sdkmessagefilterid"]
    refused = dv.post(
        "sdkmessageprocessingsteps",
        json={
            **step,
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({created.json()['serviceendpointid']})",
        },
    )
    assert refused.status_code == 400 and refusal in refused.json()["error"]["message"]
