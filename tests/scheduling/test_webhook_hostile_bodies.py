"""Webhook bodies an attacker controls: checked for the secret first where the service allows it, bounded in depth."""

import json
import uuid

import pytest

from connectors.choices import ConnectionKind
from jobs.models import SubscriptionStatus, WebhookSubscription
from jobs.scheduling.subscriptions import DATAVERSE_SECRET_HEADER
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db

SECRET = "another-s3cret-of-the-subscription-987654321"
DEEP = "[" * 200_000 + "]" * 200_000  # 400 KB: under the size limit, far over what the parser can nest


def subscription(side: str) -> WebhookSubscription:
    sub = WebhookSubscription(
        table_mapping=TableMapping.objects.get(name="CUSTOMER"),
        side=side,
        status=SubscriptionStatus.ACTIVE,
        notification_url="http://testserver/",
        remote_id="abc",
    )
    sub.set_secret(SECRET)
    sub.save()
    return sub


def test_a_deeply_nested_business_central_body_is_refused_as_such_not_a_server_error(client, redis_connection):
    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)

    response = client.post(f"/webhooks/business-central/{sub.token}/", data=DEEP, content_type="application/json")

    assert (response.status_code, response.json()) == (400, {"error": "The body nests JSON too deeply."})
    sub.refresh_from_db()
    assert sub.notifications_received == 0 and redis_connection.keys("syncadmin:changes:*") == []


def test_a_dataverse_body_is_not_parsed_before_the_secret_header_is_checked(client, redis_connection):
    sub = subscription(ConnectionKind.DATAVERSE)
    url = f"/webhooks/dataverse/{sub.token}/"

    # Without the secret, even a body that would break the parser gets the 401 of a stranger.
    assert client.post(url, data=DEEP, content_type="application/json").status_code == 401
    response = client.post(url, data=DEEP, content_type="application/json", headers={DATAVERSE_SECRET_HEADER: SECRET})
    assert (response.status_code, response.json()) == (400, {"error": "The body nests JSON too deeply."})

    context = {"MessageName": "Update", "PrimaryEntityId": str(uuid.uuid4()), "PrimaryEntityName": "account"}
    ok = client.post(
        url, data=json.dumps(context), content_type="application/json", headers={DATAVERSE_SECRET_HEADER: SECRET}
    )
    assert ok.status_code == 202
    sub.refresh_from_db()
    assert sub.notifications_received == 1
