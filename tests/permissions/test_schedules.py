"""Schedules: pausing needs the change permission; resuming, editing and subscribing need change and run-sync (they
decide when runs start); running now needs run-sync. Each list offers only the actions its user may run, and a POST
without the CSRF token (a forged form on another site) changes nothing, whoever is logged in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Schedule, ScheduleState, SyncJob
from mappings.models import TableMapping
from tests.permissions.conftest import csrf_client
from tests.previewing import as_data, hidden_fields, run_previews

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_schedule_changelist"


@pytest.fixture
def schedule():
    schedule = Schedule.objects.get(table_mapping=TableMapping.objects.get(name="CURRENCY"))
    schedule.enabled = True
    schedule.state = ScheduleState.READY
    schedule.next_run_at = timezone.now() + timedelta(hours=1)
    schedule.save()
    return schedule


def _state(schedule):
    schedule.refresh_from_db()
    return schedule.enabled, schedule.state, schedule.next_run_at


def _act(client, action: str, schedule, *, token=True, **extra):
    data = {"action": action, "_selected_action": [schedule.pk], "index": "0", **extra}
    if token:
        data["csrfmiddlewaretoken"] = client.csrf_token
    return client.post(reverse(CHANGELIST), data)


def _edit(client) -> dict:
    """The schedule form, resumed and due long ago: saved, it would start a run at the next tick."""
    return {
        "csrfmiddlewaretoken": client.csrf_token,
        "next_run_at_0": "2020-01-01",
        "next_run_at_1": "00:00:00",
        "enabled": "on",
        "minutes_between_runs": 15,
        "inactivity_timeout_minutes": 60,
        "max_attempts": 1,
        "webhook_debounce_seconds": 1,
    }


@pytest.fixture
def as_user(user_of):
    return lambda kind: csrf_client(user_of(kind))


OFFERED = {
    "viewer": set(),
    "runner": {"run_now"},
    "editor": {"pause"},
    "superuser": {"pause", "resume", "run_now", "subscribe_to_changes"},
}


@pytest.mark.parametrize("kind", OFFERED)
def test_the_schedule_list_offers_only_the_actions_the_user_may_run(as_user, schedule, kind):
    response = as_user(kind).get(reverse(CHANGELIST))

    assert response.status_code == 200
    action_form = response.context["action_form"] if OFFERED[kind] else None
    offered = {value for value, _label in action_form.fields["action"].choices if value} if action_form else set()
    assert offered == OFFERED[kind]


def test_a_view_only_user_can_neither_pause_nor_resume_a_schedule(as_user, schedule):
    client = as_user("viewer")
    before = _state(schedule)

    _act(client, "pause", schedule)
    assert _state(schedule) == before

    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)
    paused = _state(schedule)
    _act(client, "resume", schedule)
    assert _state(schedule) == paused
    assert not SyncJob.objects.exists()


def test_changing_without_run_sync_may_pause_but_not_resume_nor_edit(as_user, schedule):
    client = as_user("editor")

    _act(client, "pause", schedule)
    assert _state(schedule)[0] is False

    paused = _state(schedule)
    _act(client, "resume", schedule)
    assert _state(schedule) == paused

    url = reverse("admin:jobs_schedule_change", args=[schedule.pk])
    assert client.post(url, _edit(client)).status_code == 403
    assert _state(schedule) == paused
    assert "Save" not in client.get(url).content.decode()  # the page is read-only


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_run_sync_without_change_may_run_now_but_not_pause(as_user, schedule, sandbox_connections):
    client = as_user("runner")

    before = _state(schedule)
    _act(client, "pause", schedule)
    assert _state(schedule) == before

    asked = _act(client, "run_now", schedule)  # asks first, previewing the run: nothing starts
    assert _state(schedule) == before and not SyncJob.objects.filter(dry_run=False).exists()
    run_previews()
    client.post(reverse(CHANGELIST), as_data(hidden_fields(asked.content.decode(), "bulk-confirm")))
    assert _state(schedule)[1] == ScheduleState.RUNNING
    assert SyncJob.objects.filter(table_mapping=schedule.table_mapping).exists()


def test_change_and_run_sync_resume_a_paused_schedule(as_user, user_of, schedule):
    from django.contrib.auth.models import Permission

    user = user_of("editor")
    user.user_permissions.add(Permission.objects.get(codename="run_sync"))
    client = csrf_client(type(user).objects.get(pk=user.pk))
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)

    _act(client, "resume", schedule)

    enabled, state, next_run_at = _state(schedule)
    assert enabled and state == ScheduleState.READY and next_run_at <= timezone.now()


def test_change_and_run_sync_may_edit_a_schedule(as_user, schedule):
    client = as_user("superuser")
    Schedule.objects.filter(pk=schedule.pk).update(enabled=False)

    response = client.post(reverse("admin:jobs_schedule_change", args=[schedule.pk]), _edit(client))

    assert response.status_code == 302
    enabled, _state_now, next_run_at = _state(schedule)
    assert enabled and next_run_at.year == 2020


@pytest.mark.parametrize("kind", ["editor", "superuser"])
def test_a_forged_pause_without_the_csrf_token_changes_nothing(as_user, schedule, kind):
    client = as_user(kind)
    before = _state(schedule)

    response = _act(client, "pause", schedule, token=False)

    assert response.status_code == 403
    assert _state(schedule) == before
