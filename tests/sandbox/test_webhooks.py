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
