"""A change in either emulated system reaches the other through its webhook, without waiting for the schedule.

Everything real: the sandbox over in-process HTTP calls our receivers over in-process HTTP (handshake and
notifications), Redis holds the debounced ids, an RQ worker (with its scheduler) runs the flush and the sync.
"""

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import Schedule, SubscriptionStatus, SyncJob, WebhookSubscription
from jobs.scheduling import subscriptions
from jobs.scheduling.tick import scheduler_tick
from jobs.services import sync_enqueue
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

BASE_URL = "http://testserver"


@pytest.fixture
def customer(sandbox_connections, sandbox_webhooks, django_capture_on_commit_callbacks, rq_worker):
    """CUSTOMER with every customer and account coupled by a first full round, webhooks delivered without delay."""
    from sandbox.testing import set_webhook_timing

    mapping = TableMapping.objects.get(name="CUSTOMER")
    mapping.sync_only_coupled = False
    mapping.save()
    # Lookups would need CURRENCY and SALESPEOPLE synchronized first; this test is about the path of a change.
    mapping.field_mappings.filter(lookup_mapping__isnull=False).update(enabled=False)
    Schedule.objects.update(next_run_at=timezone.now() + timedelta(hours=1))  # no schedule is due
    Schedule.objects.filter(table_mapping=mapping).update(webhook_debounce_seconds=0)
    with django_capture_on_commit_callbacks(execute=True):
        sync_enqueue(mapping=mapping, kind=JobKind.MODIFIED)
    rq_worker()
    assert {job.status for job in SyncJob.objects.all()} == {JobStatus.SUCCEEDED}
    # Coupled now; only coupled records from here on, so a notified change is synchronized by its id.
    TableMapping.objects.filter(pk=mapping.pk).update(sync_only_coupled=True)
    set_webhook_timing(bc_delay=0, dataverse_delay=0)
    return mapping


def deliver_and_sync(django_capture_on_commit_callbacks, rq_worker_with_scheduler) -> list[SyncJob]:
    """The sandbox delivers its due webhook calls; the worker runs the flush, then the run it queued."""
    from sandbox import webhooks

    before = set(SyncJob.objects.values_list("pk", flat=True))
    webhooks.deliver_due()
    with django_capture_on_commit_callbacks(execute=True):
        rq_worker_with_scheduler()  # the debounced flush: queues the run after its commit
    rq_worker_with_scheduler()  # the run
    return list(SyncJob.objects.exclude(pk__in=before))


def read(connection, entity_set, record_id) -> dict:
    with open_client(connection) as client:
        return client.read_by_ids(entity_set, [record_id])[record_id]


def test_a_business_central_change_reaches_dataverse_through_the_subscription(
    customer, sandbox_connections, django_capture_on_commit_callbacks, rq_worker_with_scheduler
):
    from sandbox.testing import edit_as_another_user

    bc, dataverse = sandbox_connections
    subscription = subscriptions.subscription_create(
        mapping=customer, side=ConnectionKind.BUSINESS_CENTRAL, notification_base_url=BASE_URL
    )
    # Business Central validated our receiver (the handshake) before it answered.
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert subscription.remote_id
    assert timedelta(days=2, hours=23) < subscription.expires_at - timezone.now() <= timedelta(days=3)
    coupling = Coupling.objects.filter(table_mapping=customer).first()

    edit_as_another_user("bc", "customers", coupling.bc_id, city="Zwolle")
    jobs = deliver_and_sync(django_capture_on_commit_callbacks, rq_worker_with_scheduler)

    assert [(job.kind, job.direction, job.status, job.modified) for job in jobs] == [
        (JobKind.RECORDS, "to_dataverse", JobStatus.SUCCEEDED, 1)
    ]
    assert read(dataverse, "accounts", coupling.dataverse_id)["address1_city"] == "Zwolle"
    subscription.refresh_from_db()
    assert subscription.notifications_received == 1
    assert Schedule.objects.get(table_mapping=customer).next_run_at > timezone.now(), "the schedule did not run"


def test_a_dataverse_change_reaches_business_central_through_the_webhook(
    customer, sandbox_connections, django_capture_on_commit_callbacks, rq_worker_with_scheduler
):
    from sandbox.testing import edit_as_another_user, register_dataverse_webhook

    bc, dataverse = sandbox_connections
    secret = "a-secret-the-admin-also-entered-in-dataverse"
    subscription = subscriptions.subscription_create(
        mapping=customer, side=ConnectionKind.DATAVERSE, notification_base_url=BASE_URL, secret=secret, register=False
    )
    # What an administrator does with the Plug-in Registration Tool: endpoint URL, secret header, steps on accounts.
    register_dataverse_webhook(
        url=subscription.notification_url,
        entity_set="accounts",
        header_name=subscriptions.DATAVERSE_SECRET_HEADER,
        header_value=secret,
    )
    coupling = Coupling.objects.filter(table_mapping=customer).last()

    edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="555-0199")
    jobs = deliver_and_sync(django_capture_on_commit_callbacks, rq_worker_with_scheduler)

    assert [(job.kind, job.direction, job.status, job.modified) for job in jobs] == [
        (JobKind.RECORDS, "from_dataverse", JobStatus.SUCCEEDED, 1)
    ]
    assert read(bc, "customers", coupling.bc_id)["phoneNumber"] == "555-0199"


def test_a_dataverse_webhook_registered_with_another_secret_starts_nothing(
    customer, sandbox_connections, django_capture_on_commit_callbacks, rq_worker_with_scheduler
):
    from sandbox.testing import edit_as_another_user, register_dataverse_webhook

    subscription = subscriptions.subscription_create(
        mapping=customer, side=ConnectionKind.DATAVERSE, notification_base_url=BASE_URL, register=False
    )
    register_dataverse_webhook(
        url=subscription.notification_url,
        entity_set="accounts",
        header_name=subscriptions.DATAVERSE_SECRET_HEADER,
        header_value="not-the-secret-syncadmin-keeps",
    )
    coupling = Coupling.objects.filter(table_mapping=customer).first()

    edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="555-0100")

    assert deliver_and_sync(django_capture_on_commit_callbacks, rq_worker_with_scheduler) == []
    subscription.refresh_from_db()
    assert subscription.notifications_received == 0


def test_a_subscription_that_expires_soon_is_renewed_by_the_scheduler_tick(
    customer, sandbox_connections, rq_worker_with_scheduler
):
    subscription = subscriptions.subscription_create(
        mapping=customer, side=ConnectionKind.BUSINESS_CENTRAL, notification_base_url=BASE_URL
    )
    first_etag = subscription.etag
    WebhookSubscription.objects.filter(pk=subscription.pk).update(expires_at=timezone.now() + timedelta(hours=2))

    scheduler_tick()  # the tick queues one renewal job
    scheduler_tick()  # and not a second one while it waits
    assert django_rq.get_queue("default").job_ids and len(django_rq.get_queue("default").job_ids) == 1
    rq_worker_with_scheduler()

    subscription.refresh_from_db()
    assert subscription.expires_at - timezone.now() > timedelta(days=2, hours=23)
    assert subscription.etag != first_etag
    assert subscription.renewed_at is not None
    assert subscription.status == SubscriptionStatus.ACTIVE


def test_a_subscription_business_central_dropped_is_created_again_at_renewal(customer, sandbox_connections):
    from sandbox.models import BcSubscription

    subscription = subscriptions.subscription_create(
        mapping=customer, side=ConnectionKind.BUSINESS_CENTRAL, notification_base_url=BASE_URL
    )
    old_remote_id = subscription.remote_id
    BcSubscription.objects.using("sandbox").all().delete()  # as after our receiver failed a delivery

    subscriptions.subscription_renew(subscription=subscription)

    subscription.refresh_from_db()
    assert subscription.remote_id != old_remote_id
    assert BcSubscription.objects.using("sandbox").filter(subscription_id=subscription.remote_id).exists()


def _subscribe_from_the_admin(admin_client, mapping):
    from django.urls import reverse

    schedule = Schedule.objects.get(table_mapping=mapping)
    return admin_client.post(
        reverse("admin:jobs_schedule_changelist"),
        {"action": "subscribe_to_changes", "_selected_action": [schedule.pk]},
        follow=True,
    )


def test_subscribing_from_the_admin_registers_the_dataverse_webhook_and_a_change_reaches_business_central(
    customer, sandbox_connections, admin_client, django_capture_on_commit_callbacks, rq_worker_with_scheduler
):
    """The admin action registers the webhook as Dataverse documents it (a serviceendpoint with contract Webhook and
    HttpHeader authentication carrying the secret, one asynchronous PostOperation step per message of the table);
    Dataverse then posts the RemoteExecutionContext with the header, and the change is synchronized.
    https://learn.microsoft.com/power-apps/developer/data-platform/register-web-hooks
    https://learn.microsoft.com/power-apps/developer/data-platform/use-webhooks"""
    from sandbox.models import DvServiceEndpoint, DvStep
    from sandbox.testing import edit_as_another_user

    bc, _dataverse = sandbox_connections
    page = _subscribe_from_the_admin(admin_client, customer).content.decode()
    assert "registered in Dataverse" in page and "subscribed in Business Central" in page

    subscription = WebhookSubscription.objects.get(table_mapping=customer, side=ConnectionKind.DATAVERSE)
    assert subscription.status == SubscriptionStatus.ACTIVE and subscription.last_error == ""
    endpoint = DvServiceEndpoint.objects.using("sandbox").get()
    assert (endpoint.rid, endpoint.url, endpoint.contract, endpoint.authtype) == (
        subscription.remote_id,
        subscription.notification_url,
        8,
        5,
    )
    assert f'value="{subscription.secret}"' in endpoint.authvalue
    steps = DvStep.objects.using("sandbox").filter(endpoint=endpoint)
    assert sorted((s.message, s.entity_set, s.mode, s.stage) for s in steps) == [
        ("Create", "accounts", 1, 40),
        ("Delete", "accounts", 1, 40),
        ("Update", "accounts", 1, 40),
    ]

    coupling = Coupling.objects.filter(table_mapping=customer).last()
    edit_as_another_user("dataverse", "accounts", coupling.dataverse_id, telephone1="555-0142")
    jobs = deliver_and_sync(django_capture_on_commit_callbacks, rq_worker_with_scheduler)

    assert [(job.kind, job.direction, job.status, job.modified) for job in jobs] == [
        (JobKind.RECORDS, "from_dataverse", JobStatus.SUCCEEDED, 1)
    ]
    assert read(bc, "customers", coupling.bc_id)["phoneNumber"] == "555-0142"
    subscription.refresh_from_db()
    assert subscription.notifications_received == 1

    # Deleting the subscription removes the steps and the endpoint from Dataverse.
    subscriptions.subscription_delete(subscription=subscription)
    assert not DvServiceEndpoint.objects.using("sandbox").exists() and not DvStep.objects.using("sandbox").exists()


def test_a_failed_dataverse_registration_is_not_active_and_the_page_shows_what_to_register_by_hand_once(
    customer, sandbox_connections, admin_client
):
    from sandbox.models import DvServiceEndpoint

    _bc, dataverse = sandbox_connections
    dataverse.set_client_secret("not-the-app-registrations-secret")
    dataverse.save()

    response = _subscribe_from_the_admin(admin_client, customer)
    page = response.content.decode()

    subscription = WebhookSubscription.objects.get(table_mapping=customer, side=ConnectionKind.DATAVERSE)
    assert subscription.status == SubscriptionStatus.FAILED
    assert subscription.last_error.startswith("Not registered in Dataverse:")
    assert not DvServiceEndpoint.objects.using("sandbox").exists()
    assert "Register the Dataverse webhook by hand" in page and "not active" in page
    assert subscription.notification_url in page and subscriptions.DATAVERSE_SECRET_HEADER in page
    assert f'<code class="secret">{subscription.secret}</code>' in page  # shown this once ...
    listed = admin_client.get(f"/admin/jobs/webhooksubscription/{subscription.pk}/change/").content.decode()
    assert subscription.secret not in listed and "Failed" in listed  # ... never again

    # The administrator registers it by hand with what the page showed; Dataverse's first call makes it active.
    from sandbox import webhooks
    from sandbox.testing import edit_as_another_user, register_dataverse_webhook

    register_dataverse_webhook(
        url=subscription.notification_url,
        entity_set="accounts",
        header_name=subscriptions.DATAVERSE_SECRET_HEADER,
        header_value=subscription.secret,
    )
    edit_as_another_user("dataverse", "accounts", Coupling.objects.filter(table_mapping=customer).first().dataverse_id)
    webhooks.deliver_due()
    subscription.refresh_from_db()
    assert (subscription.status, subscription.last_error, subscription.notifications_received) == (
        SubscriptionStatus.ACTIVE,
        "",
        1,
    )
