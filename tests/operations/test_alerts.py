"""Alert rules fire once per incident and resolve once, by mail (Django's test backend) and by a real webhook."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from jobs.choices import ErrorClass, ErrorState, JobStatus
from jobs.models import Schedule, SyncError, SyncJob
from jobs.scheduling.schedules import schedules_resume
from mappings.choices import Direction
from mappings.models import TableMapping
from operations.alerts import alerts_evaluate
from operations.models import AlertChannel, AlertRule, ChannelKind, Incident, RuleKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return TableMapping.objects.get(name="CUSTOMER")


@pytest.fixture
def channels(webhook_receiver):
    return [
        AlertChannel.objects.create(
            name="ops mail", kind=ChannelKind.EMAIL, email_to="ops@example.com, dba@example.com"
        ),
        AlertChannel.objects.create(name="ops chat", kind=ChannelKind.WEBHOOK, webhook_url=webhook_receiver.url),
    ]


def make_rule(channels, **values) -> AlertRule:
    rule = AlertRule.objects.create(name=values.pop("name", "the rule"), **values)
    rule.channels.set(channels)
    return rule


def finished_job(mapping, status, *, at=None, direction=Direction.TO_DATAVERSE, **values) -> SyncJob:
    at = at or timezone.now()
    return SyncJob.objects.create(
        table_mapping=mapping,
        direction=direction,
        status=status,
        started_at=at - timedelta(seconds=5),
        finished_at=at,
        **values,
    )


def test_a_failed_run_alerts_once_and_resolves_once_by_mail_and_webhook(customer, channels, webhook_receiver):
    make_rule(channels, kind=RuleKind.RUN_FAILED, table_mapping=customer)
    finished_job(customer, JobStatus.FAILED, message="Could not connect: the token endpoint refused the request.")

    alerts_evaluate()
    finished_job(customer, JobStatus.FAILED, message="again")  # a second failing run: the same incident
    alerts_evaluate()

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com", "dba@example.com"]
    assert mail.outbox[0].subject == "[syncadmin] the rule: CUSTOMER"
    assert "The last run to dataverse failed: Could not connect" in mail.outbox[0].body
    assert len(webhook_receiver.bodies) == 1
    body = webhook_receiver.bodies[0]
    assert body["text"].startswith("[syncadmin] the rule: CUSTOMER\n")  # what Slack and Teams show
    assert body["@type"] == "MessageCard"
    assert body["syncadmin"]["state"] == "firing"
    assert body["syncadmin"]["subject_name"] == "CUSTOMER"
    assert Incident.objects.get().is_open

    finished_job(customer, JobStatus.SUCCEEDED)
    alerts_evaluate()
    alerts_evaluate()

    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject == "[syncadmin] Resolved: the rule: CUSTOMER"
    assert [b["syncadmin"]["state"] for b in webhook_receiver.bodies] == ["firing", "resolved"]
    assert not Incident.objects.get().is_open

    finished_job(customer, JobStatus.FAILED, message="a new failure")
    alerts_evaluate()

    assert Incident.objects.count() == 2, "a failure after the resolution is a new incident"
    assert len(mail.outbox) == 3


def test_a_failure_in_one_direction_is_not_hidden_by_the_other_direction_succeeding(channels):
    currency = TableMapping.objects.get(name="CURRENCY")
    make_rule(channels, kind=RuleKind.RUN_FAILED)
    at = timezone.now()
    finished_job(currency, JobStatus.FAILED, at=at - timedelta(seconds=1), message="boom")
    finished_job(currency, JobStatus.SUCCEEDED, at=at, direction=Direction.FROM_DATAVERSE)

    alerts_evaluate()

    assert [i.subject_name for i in Incident.objects.all()] == ["CURRENCY"]


def test_n_errors_within_m_minutes_fire_and_resolve_when_they_age_out(customer, channels):
    make_rule(channels, kind=RuleKind.ERRORS, error_class=ErrorClass.VALIDATION, threshold=3, window_minutes=10)
    job = finished_job(customer, JobStatus.PARTLY_FAILED)
    for _ in range(2):
        SyncError.objects.create(
            job=job, table_mapping=customer, direction=job.direction, error_class="validation", message="bad"
        )
    SyncError.objects.create(
        job=job, table_mapping=customer, direction=job.direction, error_class="conflict", message="other class"
    )
    alerts_evaluate()
    assert mail.outbox == []

    SyncError.objects.create(
        job=job, table_mapping=customer, direction=job.direction, error_class="validation", message="bad"
    )
    alerts_evaluate()
    alerts_evaluate()
    assert len(mail.outbox) == 1
    assert "3 validation errors in the last 10 minutes" in mail.outbox[0].body

    alerts_evaluate(now=timezone.now() + timedelta(minutes=11))
    assert len(mail.outbox) == 2
    assert "Resolved" in mail.outbox[1].subject


def test_errors_already_resolved_or_superseded_raise_no_alert(customer, channels):
    """An alert on errors is about what is wrong now: errors the next sync resolved do not count."""
    make_rule(channels, kind=RuleKind.ERRORS, threshold=3, window_minutes=10)
    job = finished_job(customer, JobStatus.PARTLY_FAILED)
    for state in (ErrorState.RESOLVED_BY_SYNC, ErrorState.SUPERSEDED, ErrorState.RESOLVED_BY_HAND, ErrorState.OPEN):
        SyncError.objects.create(
            job=job, table_mapping=customer, direction=job.direction, error_class="validation", message="x", state=state
        )
    alerts_evaluate()
    assert mail.outbox == [] and not Incident.objects.exists()


def test_a_firing_rule_pauses_the_schedule_and_the_schedule_says_why(customer, channels):
    make_rule(channels, name="Customer failing", kind=RuleKind.RUN_FAILED, pause_schedule=True)
    finished_job(customer, JobStatus.FAILED, message="Bad credentials")

    alerts_evaluate()

    schedule = Schedule.objects.get(table_mapping=customer)
    assert schedule.enabled is False
    assert schedule.status.startswith("Paused: Alert rule 'Customer failing': The last run to dataverse failed")
    assert Incident.objects.get().schedule_paused
    assert "The schedule of CUSTOMER was paused" in mail.outbox[0].body
    assert Schedule.objects.filter(enabled=True).exclude(table_mapping=customer).exists(), "only its own mapping"

    schedules_resume(schedules=[schedule])
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.paused_reason, schedule.status) == (True, "", "Ready")


def test_a_schedule_an_administrator_paused_keeps_its_own_reason(customer, channels):
    Schedule.objects.filter(table_mapping=customer).update(enabled=False)
    make_rule(channels, kind=RuleKind.RUN_FAILED, pause_schedule=True)
    finished_job(customer, JobStatus.FAILED)

    alerts_evaluate()

    assert Schedule.objects.get(table_mapping=customer).status == "Paused"
    assert not Incident.objects.get().schedule_paused


def test_no_successful_run_for_h_hours(customer, channels):
    make_rule(channels, kind=RuleKind.NO_SUCCESS, table_mapping=customer, window_minutes=6 * 60)
    finished_job(customer, JobStatus.SUCCEEDED, at=timezone.now() - timedelta(hours=5))
    alerts_evaluate()
    assert mail.outbox == []

    alerts_evaluate(now=timezone.now() + timedelta(hours=2))
    assert len(mail.outbox) == 1
    assert "No successful run since" in mail.outbox[0].body

    finished_job(customer, JobStatus.PARTLY_FAILED, at=timezone.now() + timedelta(hours=2))
    alerts_evaluate(now=timezone.now() + timedelta(hours=2, minutes=1))
    assert "Resolved" in mail.outbox[1].subject


def test_a_job_running_without_progress_for_m_minutes(customer, channels):
    make_rule(channels, kind=RuleKind.STALLED, window_minutes=15)
    job = SyncJob.objects.create(
        table_mapping=customer, direction=Direction.TO_DATAVERSE, status=JobStatus.RUNNING, progress_done=40
    )
    now = timezone.now()
    alerts_evaluate(now=now)
    alerts_evaluate(now=now + timedelta(minutes=10))
    assert mail.outbox == []

    alerts_evaluate(now=now + timedelta(minutes=16))
    assert len(mail.outbox) == 1
    assert f"Sync job #{job.pk} has made no progress since" in mail.outbox[0].body

    SyncJob.objects.filter(pk=job.pk).update(progress_done=90)
    alerts_evaluate(now=now + timedelta(minutes=17))
    assert len(mail.outbox) == 2
    assert "Resolved" in mail.outbox[1].subject


def test_throttled_answers_above_p_percent_of_requests(customer, channels):
    make_rule(channels, kind=RuleKind.THROTTLED, threshold=20, window_minutes=60)
    finished_job(customer, JobStatus.SUCCEEDED, http_requests_by_kind={"read": 30, "write": 10, "retry": 8})
    alerts_evaluate()
    assert mail.outbox == [], "8 of 40 is 20%: not above"

    finished_job(customer, JobStatus.SUCCEEDED, http_requests_by_kind={"read": 10, "retry": 5})
    alerts_evaluate()
    assert len(mail.outbox) == 1
    assert "13 of 50 requests retried" in mail.outbox[0].body


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_a_connection_whose_token_cannot_be_obtained(sandbox_connections, channels):
    bc, dataverse = sandbox_connections
    make_rule(channels, kind=RuleKind.TOKEN, window_minutes=15)
    alerts_evaluate()
    assert mail.outbox == []

    secret = "a-wrong-secret-that-must-never-be-shown"
    bc.set_client_secret(secret)
    bc.save()
    now = timezone.now()
    alerts_evaluate(now=now)  # checked less than 15 minutes ago: the previous answer stands
    assert mail.outbox == []

    alerts_evaluate(now=now + timedelta(minutes=16))
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == f"[syncadmin] the rule: {bc.name}"
    assert f"No token can be obtained for {bc.name}: Bad credentials" in mail.outbox[0].body
    assert secret not in mail.outbox[0].body

    bc.set_client_secret(dataverse.client_secret)
    bc.save()
    alerts_evaluate(now=now + timedelta(minutes=32))
    assert "Resolved" in mail.outbox[1].subject


def test_an_unreachable_channel_is_recorded_and_does_not_stop_the_others(customer, channels, webhook_receiver):
    webhook_receiver.status = 500
    make_rule(channels, kind=RuleKind.RUN_FAILED)
    finished_job(customer, JobStatus.FAILED)

    alerts_evaluate()

    assert len(mail.outbox) == 1
    assert Incident.objects.get().delivery_problems == "ops chat: the webhook answered HTTP 500"


def test_send_a_test_posts_to_the_channel(admin_client, channels, webhook_receiver):
    webhook = channels[1]
    url = reverse("admin:operations_alertchannel_send_test", args=[webhook.pk])

    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, follow=True)

    assert response.status_code == 200
    assert "Ops chat: test sent." in response.content.decode()  # the admin capitalizes messages
    assert webhook_receiver.bodies[0]["syncadmin"] == {"state": "test", "channel": "ops chat"}
    assert (
        "Send a test"
        in admin_client.get(reverse("admin:operations_alertchannel_change", args=[webhook.pk])).content.decode()
    )

    admin_client.post(reverse("admin:operations_alertchannel_send_test", args=[channels[0].pk]))
    assert mail.outbox[0].subject == "[syncadmin] Test alert"


def test_send_a_test_needs_the_change_permission(client, channels, webhook_receiver):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_alertchannel"))
    client.force_login(viewer)

    response = client.post(reverse("admin:operations_alertchannel_send_test", args=[channels[1].pk]))

    assert response.status_code == 403
    assert webhook_receiver.bodies == []
