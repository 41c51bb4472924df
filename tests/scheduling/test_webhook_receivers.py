"""The webhook receivers: handshake, secrets, bounded work, debounce, and waking a schedule on hold."""

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from connectors.choices import ConnectionKind
from jobs.choices import JobKind
from jobs.models import Schedule, ScheduleState, SubscriptionStatus, SyncJob, WebhookSubscription
from jobs.scheduling import notifications
from jobs.scheduling.subscriptions import DATAVERSE_SECRET_HEADER
from jobs.webhooks import MAX_BODY_BYTES
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

SECRET = "s3cret-value-of-the-subscription-0123456789"


def subscription(side: str, *, mapping_name: str = "CUSTOMER") -> WebhookSubscription:
    sub = WebhookSubscription(
        table_mapping=TableMapping.objects.get(name=mapping_name),
        side=side,
        status=SubscriptionStatus.ACTIVE,
        notification_url="http://testserver/",
        remote_id="abc",
    )
    sub.set_secret(SECRET)
    sub.save()
    return sub


def bc_url(sub: WebhookSubscription) -> str:
    return f"/webhooks/business-central/{sub.token}/"


def dataverse_url(sub: WebhookSubscription) -> str:
    return f"/webhooks/dataverse/{sub.token}/"


def bc_notification(*record_ids, client_state=SECRET, change="updated") -> dict:
    company = uuid.uuid4()
    return {
        "value": [
            {
                "subscriptionId": "abc",
                "clientState": client_state,
                "expirationDateTime": "2030-01-01T00:00:00Z",
                "resource": f"api/v2.0/companies({company})/customers({record_id})",
                "changeType": change,
                "lastModifiedDateTime": "2026-11-24T12:00:00.000Z",
            }
            for record_id in record_ids
        ]
    }


def dataverse_context(record_id, message="Update") -> dict:
    return {"MessageName": message, "PrimaryEntityId": str(record_id), "PrimaryEntityName": "account", "Depth": 1}


def post_json(client, url, payload, **headers):
    return client.post(url, data=json.dumps(payload), content_type="application/json", headers=headers)


def debounce(seconds: int, mapping_name: str = "CUSTOMER") -> None:
    Schedule.objects.filter(table_mapping__name=mapping_name).update(webhook_debounce_seconds=seconds)


def test_the_business_central_handshake_echoes_the_token_for_a_known_subscription_only(client):
    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)

    response = client.post(bc_url(sub) + "?validationToken=tok-123")
    assert (response.status_code, response.content) == (200, b"tok-123")
    assert response["Content-Type"].startswith("text/plain")

    unknown = client.post(f"/webhooks/business-central/{uuid.uuid4()}/?validationToken=tok-123")
    assert unknown.status_code == 404


def test_receivers_answer_post_only_and_need_no_login_or_csrf_token(client):
    from django.test import Client

    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)
    assert client.get(bc_url(sub)).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    assert post_json(strict, bc_url(sub), bc_notification(uuid.uuid4())).status_code == 202


def test_a_business_central_notification_with_a_wrong_client_state_is_rejected(client, redis_connection):
    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)

    for wrong in ("nope", "", None, SECRET + "x", SECRET[:-1]):
        response = post_json(client, bc_url(sub), bc_notification(uuid.uuid4(), client_state=wrong))
        assert response.status_code == 401
        assert SECRET not in response.content.decode()
    # One forged item in a batch rejects the whole batch.
    batch = bc_notification(uuid.uuid4())
    batch["value"] += bc_notification(uuid.uuid4(), client_state="forged")["value"]
    assert post_json(client, bc_url(sub), batch).status_code == 401

    sub.refresh_from_db()
    assert sub.notifications_received == 0
    assert redis_connection.keys("syncadmin:changes:*") == []


def test_a_dataverse_webhook_with_a_wrong_secret_header_is_rejected(client, redis_connection):
    sub = subscription(ConnectionKind.DATAVERSE)
    context = dataverse_context(uuid.uuid4())

    assert post_json(client, dataverse_url(sub), context).status_code == 401
    wrong = {DATAVERSE_SECRET_HEADER: "guess"}
    assert post_json(client, dataverse_url(sub), context, **wrong).status_code == 401
    assert redis_connection.keys("syncadmin:changes:*") == []

    right = {DATAVERSE_SECRET_HEADER: SECRET}
    assert post_json(client, dataverse_url(sub), context, **right).status_code == 202


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(client):
    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)
    body = json.dumps({"value": [], "padding": "x" * MAX_BODY_BYTES})

    response = client.post(bc_url(sub), data=body, content_type="application/json")

    assert response.status_code == 413


def test_repeated_notifications_are_coalesced_into_one_run_of_the_changed_records(client, rq_worker_with_scheduler):
    debounce(0)
    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)
    first, second, third = (uuid.uuid4() for _ in range(3))

    for payload in (bc_notification(first), bc_notification(second, first), bc_notification(third)):
        assert post_json(client, bc_url(sub), payload).status_code == 202

    flushes = rq_worker_with_scheduler_jobs(rq_worker_with_scheduler)
    jobs = list(SyncJob.objects.all())
    assert len(jobs) == 1, "one run for the three notifications"
    assert (jobs[0].kind, jobs[0].direction) == (JobKind.RECORDS, "to_dataverse")
    assert sorted(jobs[0].record_ids) == sorted(str(i) for i in (first, second, third))
    assert flushes.count("jobs.scheduling.tasks.flush_notified_changes") == 1
    sub.refresh_from_db()
    assert sub.notifications_received == 3


def rq_worker_with_scheduler_jobs(run_worker) -> list[str]:
    """Run the worker; return the function names of the jobs it ran."""
    import django_rq
    from rq.registry import FinishedJobRegistry

    run_worker()
    registry = FinishedJobRegistry(queue=django_rq.get_queue("default"))
    return [django_rq.get_queue("default").fetch_job(job_id).func_name for job_id in registry.get_job_ids()]


def test_the_debounce_delay_holds_the_run_back_until_it_has_passed(client, rq_worker_with_scheduler):
    # Long enough that a loaded machine (CI, parallel work) does not pass it before the first worker round.
    debounce(3)
    sub = subscription(ConnectionKind.DATAVERSE)
    headers = {DATAVERSE_SECRET_HEADER: SECRET}
    record = uuid.uuid4()

    assert post_json(client, dataverse_url(sub), dataverse_context(record), **headers).status_code == 202
    rq_worker_with_scheduler()
    assert not SyncJob.objects.exists(), "nothing before the delay"

    time.sleep(3.1)
    rq_worker_with_scheduler()
    job = SyncJob.objects.get()
    assert (job.kind, job.direction, job.record_ids) == (JobKind.RECORDS, "from_dataverse", [str(record)])


def test_more_changed_records_than_the_bound_become_one_incremental_run(client, rq_worker_with_scheduler, monkeypatch):
    monkeypatch.setattr(notifications, "MAX_PENDING_IDS", 3)
    debounce(0)
    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)

    post_json(client, bc_url(sub), bc_notification(uuid.uuid4(), uuid.uuid4()))
    post_json(client, bc_url(sub), bc_notification(uuid.uuid4(), uuid.uuid4()))
    rq_worker_with_scheduler()

    job = SyncJob.objects.get()
    assert (job.kind, job.direction, job.record_ids) == (JobKind.MODIFIED, "to_dataverse", [])


def test_changes_that_a_run_by_ids_would_take_past_the_mappings_filter_start_an_incremental_run(
    client, rq_worker_with_scheduler
):
    """With uncoupled records synchronized too, a run by ids would skip the filter (a vendor account would become a
    customer); the incremental run applies it."""
    debounce(0)
    TableMapping.objects.filter(name="CUSTOMER").update(sync_only_coupled=False)
    sub = subscription(ConnectionKind.DATAVERSE)
    headers = {DATAVERSE_SECRET_HEADER: SECRET}

    assert post_json(client, dataverse_url(sub), dataverse_context(uuid.uuid4()), **headers).status_code == 202
    rq_worker_with_scheduler()

    job = SyncJob.objects.get()
    assert (job.kind, job.direction) == (JobKind.MODIFIED, "from_dataverse")


def test_a_collection_notification_starts_an_incremental_run(client, rq_worker_with_scheduler):
    debounce(0)
    sub = subscription(ConnectionKind.BUSINESS_CENTRAL)
    payload = bc_notification(uuid.uuid4(), change="collection")

    assert post_json(client, bc_url(sub), payload).status_code == 202
    rq_worker_with_scheduler()

    job = SyncJob.objects.get()
    assert (job.kind, job.direction) == (JobKind.MODIFIED, "to_dataverse")


def test_a_notification_wakes_a_schedule_on_hold(client):
    sub = subscription(ConnectionKind.DATAVERSE)
    hold_end = timezone.now() + timedelta(minutes=720)
    Schedule.objects.filter(table_mapping__name="CUSTOMER").update(state=ScheduleState.ON_HOLD, next_run_at=hold_end)

    response = post_json(
        client, dataverse_url(sub), dataverse_context(uuid.uuid4(), "Delete"), **{DATAVERSE_SECRET_HEADER: SECRET}
    )

    assert response.status_code == 202
    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")
    assert schedule.state == ScheduleState.READY
    assert schedule.next_run_at <= timezone.now() + timedelta(minutes=30)


def test_a_change_on_a_side_the_mapping_does_not_read_starts_nothing(client, rq_worker_with_scheduler):
    debounce(0)
    sub = subscription(ConnectionKind.DATAVERSE, mapping_name="CURRENCY")  # CURRENCY goes to Dataverse only
    headers = {DATAVERSE_SECRET_HEADER: SECRET}

    assert post_json(client, dataverse_url(sub), dataverse_context(uuid.uuid4()), **headers).status_code == 202
    rq_worker_with_scheduler()

    assert not SyncJob.objects.exists()
