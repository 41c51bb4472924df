"""Every admin action of every registered ModelAdmin (`admin.site._registry`, each one's declared actions, the site's
"delete selected" included) is classified below: who may run it and what it changes. Each is then run on every row
of its list as each kind of user, CSRF checks on and a valid token sent: those who may not are refused (the list
says "No action selected.", or the list itself is refused) and the state (every row of both databases, every Redis
key) is unchanged; those who may are let through.

An action nobody classified fails `test_every_admin_action_is_classified`: add it to ACTIONS (README, "Permissions").
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages import get_messages
from django.db import router
from django.urls import reverse

from sandbox.models import ROW_MODELS
from tests.permissions.conftest import KINDS, NOBODY, RUN_SYNC, SUPERUSER, changes, csrf_client, perms, rolled_back

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def delete(label: str, changes: str = "deletes the selected rows"):
    app, model = label.lower().split(".")
    return perms(f"{app}.delete_{model}"), changes


def run_sync(label: str, changes: str):
    """A run-sync action of a list: seeing the list and the run-sync permission."""
    app, model = label.lower().split(".")
    return perms(f"{app}.view_{model}", RUN_SYNC), changes


ACTIONS = {
    ("auth.Group", "delete_selected"): delete("auth.Group"),
    ("auth.User", "delete_selected"): delete("auth.User"),
    ("sandbox.Fault", "delete_selected"): (SUPERUSER, "deletes the sandbox's faults"),
    ("sandbox.Setting", "delete_selected"): (SUPERUSER, "deletes the sandbox's settings"),
    # The emulated tables are read-only for everybody: only the services' APIs write them.
    **{
        (model._meta.label, "delete_selected"): (NOBODY, "nothing: the emulated tables are read-only")
        for model in ROW_MODELS.values()
    },
    ("connectors.Connection", "delete_selected"): delete("connectors.Connection"),
    ("connectors.Connection", "test_connections"): (
        perms("connectors.change_connection"),
        "nothing; asks each service for a token and one row",
    ),
    ("mappings.TableMapping", "delete_selected"): delete("mappings.TableMapping"),
    ("mappings.TableMapping", "reset_to_defaults"): (
        perms("mappings.change_tablemapping"),
        "nothing yet: opens the reset page, which asks to confirm",
    ),
    ("mappings.TableMapping", "synchronize_modified_records"): run_sync("mappings.TableMapping", "queues syncs"),
    ("mappings.TableMapping", "preview_modified_records"): run_sync("mappings.TableMapping", "queues dry runs"),
    ("mappings.TableMapping", "run_full_synchronization"): run_sync("mappings.TableMapping", "queues full syncs"),
    ("mappings.TableMapping", "preview_full_synchronization"): run_sync("mappings.TableMapping", "queues dry runs"),
    ("mappings.TableMapping", "run_match_based_coupling"): run_sync("mappings.TableMapping", "queues coupling"),
    ("mappings.TableMapping", "uncouple_all"): run_sync("mappings.TableMapping", "queues uncoupling"),
    ("mappings.TableMapping", "reconcile"): run_sync("mappings.TableMapping", "queues reconciliations"),
    ("jobs.Reconciliation", "delete_selected"): delete("jobs.Reconciliation"),
    ("jobs.Reconciliation", "uncouple_orphans"): run_sync("jobs.Reconciliation", "queues uncoupling"),
    ("jobs.Reconciliation", "apply_deletion_policy_to_orphans"): run_sync(
        "jobs.Reconciliation", "queues confirmed deletions"
    ),
    ("jobs.Reconciliation", "couple_uncoupled_by_match"): run_sync("jobs.Reconciliation", "queues coupling"),
    ("jobs.Reconciliation", "resynchronize_drift"): run_sync("jobs.Reconciliation", "queues records syncs"),
    ("mappings.MappingChange", "delete_selected"): (NOBODY, "nothing: the log of mapping changes is kept"),
    # A bare delete is not uncoupling (the Dataverse company stamp, open errors): uncouple_selected is the way.
    ("coupling.Coupling", "delete_selected"): (NOBODY, "nothing: couplings are removed by uncoupling"),
    ("coupling.Coupling", "synchronize_to_dataverse"): run_sync("coupling.Coupling", "queues a records sync"),
    ("coupling.Coupling", "synchronize_from_dataverse"): run_sync("coupling.Coupling", "queues a records sync"),
    ("coupling.Coupling", "retry_skipped"): run_sync("coupling.Coupling", "clears 'skipped'"),
    ("coupling.Coupling", "uncouple_selected"): run_sync("coupling.Coupling", "queues uncoupling"),
    ("coupling.Coupling", "restore_deleted_partners"): run_sync("coupling.Coupling", "recreates deleted records"),
    ("coupling.Coupling", "delete_surviving_records"): run_sync("coupling.Coupling", "deletes remote records"),
    ("coupling.AmbiguousMatch", "delete_selected"): delete("coupling.AmbiguousMatch"),
    ("coupling.KeptRecord", "delete_selected"): delete("coupling.KeptRecord", "forgets records kept uncoupled"),
    ("jobs.SyncJob", "delete_selected"): delete("jobs.SyncJob", "deletes jobs and their errors"),
    ("jobs.SyncJob", "cancel_jobs"): run_sync("jobs.SyncJob", "asks running jobs to stop"),
    ("jobs.SyncJob", "confirm_held_deletions"): run_sync("jobs.SyncJob", "queues the held deletions"),
    ("jobs.SyncError", "delete_selected"): delete("jobs.SyncError"),
    ("jobs.SyncError", "retry_errors"): run_sync("jobs.SyncError", "queues records syncs"),
    ("jobs.SyncError", "retry_error_classes"): run_sync("jobs.SyncError", "queues records syncs"),
    ("jobs.SyncError", "unskip_error_couplings"): run_sync("jobs.SyncError", "clears 'skipped'"),
    ("jobs.SyncError", "resolve_errors"): run_sync("jobs.SyncError", "closes errors (kept in the history)"),
    ("jobs.SyncError", "uncouple_error_records"): run_sync("jobs.SyncError", "queues uncoupling"),
    ("jobs.SyncError", "restore_error_partners"): run_sync("jobs.SyncError", "recreates deleted records"),
    ("jobs.SyncError", "delete_error_surviving_records"): run_sync("jobs.SyncError", "deletes remote records"),
    ("jobs.Schedule", "delete_selected"): (NOBODY, "nothing: a schedule goes with its mapping"),
    ("jobs.Schedule", "pause"): (perms("jobs.change_schedule"), "pauses: no run starts"),
    ("jobs.Schedule", "resume"): (perms("jobs.change_schedule", RUN_SYNC), "resumes: runs start at the next tick"),
    ("jobs.Schedule", "run_now"): (perms("jobs.view_schedule", RUN_SYNC), "asks, then starts runs now"),
    ("jobs.Schedule", "subscribe_to_changes"): (
        perms("jobs.change_schedule", RUN_SYNC),
        "creates webhook subscriptions: changes then wake the schedule",
    ),
    ("operations.AlertChannel", "delete_selected"): delete("operations.AlertChannel"),
    ("operations.AlertChannel", "send_test"): (
        perms("operations.change_alertchannel"),
        "nothing stored; sends a test message to each channel",
    ),
    ("operations.AlertRule", "delete_selected"): delete("operations.AlertRule"),
    ("operations.Incident", "delete_selected"): delete("operations.Incident", "deletes incidents (their record)"),
    ("jobs.WebhookSubscription", "delete_selected"): delete("jobs.WebhookSubscription", "deletes subscriptions"),
    ("jobs.WebhookSubscription", "renew"): (perms("jobs.change_webhooksubscription"), "renews subscriptions"),
}


def declared_actions():
    """(model, action name) of every action any user could be offered, from every registered ModelAdmin."""
    for model, model_admin in admin.site._registry.items():
        for _function, name, _description in model_admin._get_base_actions():
            yield model, name


def test_every_admin_action_is_classified():
    declared = {(model._meta.label, name) for model, name in declared_actions()}

    unclassified = sorted(declared - ACTIONS.keys())
    assert not unclassified, (
        f"Classify these admin actions in ACTIONS of {__file__} (who may run them, what they change), and add them "
        f"to the README's permission table: {unclassified}"
    )
    assert sorted(ACTIONS.keys() - declared) == [], "ACTIONS names actions that no longer exist: remove them"


def refused(response) -> bool:
    """The list refused (login, 403), showed itself without the action (200: a user offered no action at all), or
    said "No action selected." (the action is not offered to this user)."""
    if response.status_code == 302 and response["Location"].startswith(reverse("admin:login")):
        return True
    said = [str(message) for message in get_messages(response.wsgi_request)]
    templates = getattr(response, "template_name", None) or []
    templates = [templates] if isinstance(templates, str) else templates
    the_list_again = response.status_code == 200 and any("change_list" in name for name in templates)
    return response.status_code == 403 or the_list_again or "No action selected." in said


@pytest.mark.parametrize("kind", KINDS)
def test_each_action_runs_only_for_the_users_it_is_classified_for_and_the_others_change_nothing(
    kind, user_of, world, state
):
    user = user_of(kind) or AnonymousUser()
    client = csrf_client(None if kind == "anonymous" else user)
    failures = []
    before = None
    for model, name in declared_actions():
        need, _changes = ACTIONS[(model._meta.label, name)]
        allowed = need.allows(user)
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        selected = [str(pk) for pk in model._base_manager.using(router.db_for_read(model)).values_list("pk", flat=True)]
        data = {
            "csrfmiddlewaretoken": client.csrf_token,
            "action": name,
            "_selected_action": selected,
            "index": "0",
            "post": "yes",  # "delete selected": confirmed, as its confirmation page sends
            "confirm": "yes",  # the bulk actions of jobs/admin/confirm.py: confirmed, as their page sends
        }
        if not allowed and before is None:
            before = state()
        client.cookies.pop("messages", None)  # only this request's messages
        with rolled_back():
            response = client.post(url, data)
            after = None if allowed else state()
        said = f"{model._meta.label} action {name} (needs {need}) answered {response.status_code} to {kind}"
        if allowed and (refused(response) or response.status_code >= 500):
            failures.append(f"{said}: it should run")
        if not allowed and not refused(response):
            failures.append(f"{said}: it should be refused")
        if not allowed and before != after:
            failures.append(f"{said}, and changed {changes(before, after)}")
        if allowed or before != after:
            before = None

    assert not failures, "\n".join(failures)
