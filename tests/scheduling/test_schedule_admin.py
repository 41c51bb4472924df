"""The admin shows each schedule's state and the webhook subscriptions with their expiry, never a secret."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connectors.choices import ConnectionKind
from jobs.models import Schedule, ScheduleState, SubscriptionStatus, WebhookSubscription
from mappings.models import TableMapping

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

SECRET = "the-stored-secret-nobody-may-see-again"


def test_the_schedule_list_shows_each_state_and_next_run(admin_client):
    hold_end = timezone.now() + timedelta(hours=12)
    Schedule.objects.filter(table_mapping__name="CUSTOMER").update(state=ScheduleState.ON_HOLD, next_run_at=hold_end)
    Schedule.objects.filter(table_mapping__name="VENDOR").update(enabled=False)
    Schedule.objects.filter(table_mapping__name="CONTACT").update(failed_attempts=10)
    Schedule.objects.filter(table_mapping__name="CURRENCY").update(state=ScheduleState.RUNNING)

    page = admin_client.get(reverse("admin:jobs_schedule_changelist")).content.decode()

    # On hold, it checks for changes at each interval (and runs at once on one); the timeout bounds the wait.
    assert "Idle: checking every 30 min" in page
    assert f"runs at once on a change, else at {timezone.localtime(hold_end):%Y-%m-%d %H:%M}" in page
    assert "Paused" in page
    assert "Failing (10 failed runs in a row)" in page
    assert "Running" in page
    assert "Ready" in page  # SALESPEOPLE
    # The schedule's own last run, not the mapping's (runs started by hand do not count): the header says which.
    assert "Last scheduled run finished" in page


def test_pause_and_resume_from_the_admin(admin_client):
    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")
    url = reverse("admin:jobs_schedule_changelist")

    admin_client.post(url, {"action": "pause", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert not schedule.enabled

    admin_client.post(url, {"action": "resume", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.state) == (True, ScheduleState.READY)
    assert schedule.next_run_at <= timezone.now()


def test_subscriptions_show_their_expiry_and_never_their_secret(admin_client):
    subscription = WebhookSubscription(
        table_mapping=TableMapping.objects.get(name="CUSTOMER"),
        side=ConnectionKind.BUSINESS_CENTRAL,
        status=SubscriptionStatus.ACTIVE,
        notification_url="http://testserver/webhooks/x/",
        expires_at=timezone.now() + timedelta(days=2),
    )
    subscription.set_secret(SECRET)
    subscription.save()

    listing = admin_client.get(reverse("admin:jobs_webhooksubscription_changelist")).content.decode()
    change_url = reverse("admin:jobs_webhooksubscription_change", args=[subscription.pk])
    form = admin_client.get(change_url).content.decode()

    assert "Expires at" in listing
    assert SECRET not in listing + form
    assert subscription.secret_encrypted not in listing + form
    assert SECRET not in subscription.secret_encrypted  # stored encrypted

    response = admin_client.post(change_url, {"new_secret": "a-new-secret-from-the-dataverse-admin"})
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.secret == "a-new-secret-from-the-dataverse-admin"


def test_subscribing_from_the_admin_creates_both_subscriptions(admin_client, sandbox_connections, sandbox_webhooks):
    schedule = Schedule.objects.get(table_mapping__name="CUSTOMER")

    response = admin_client.post(
        reverse("admin:jobs_schedule_changelist"),
        {"action": "subscribe_to_changes", "_selected_action": [schedule.pk]},
        follow=True,
    )

    assert response.status_code == 200
    subscriptions = {s.side: s for s in WebhookSubscription.objects.filter(table_mapping=schedule.table_mapping)}
    assert set(subscriptions) == {ConnectionKind.BUSINESS_CENTRAL, ConnectionKind.DATAVERSE}
    bc = subscriptions[ConnectionKind.BUSINESS_CENTRAL]
    assert bc.status == SubscriptionStatus.ACTIVE and bc.expires_at > timezone.now() + timedelta(days=2)
    assert bc.notification_url.startswith("http://testserver/webhooks/business-central/")
    # Registered in Dataverse over the Web API where the service allows it; else the admin is told how.
    dataverse = subscriptions[ConnectionKind.DATAVERSE]
    assert dataverse.remote_id or "x-syncadmin-webhook-secret" in dataverse.last_error
