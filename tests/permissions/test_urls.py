"""Every URL the project serves, taken from the URL resolver (the admin, each ModelAdmin's pages, django-rq's
dashboard, the webhook receivers, the sandbox), is classified below: who may GET it, who may POST to it, and what it
changes. Each is then tried as each kind of user, CSRF checks on and a valid token sent: those who may not are refused
and the state (every row of both databases, every Redis key) is unchanged; those who may are let in.

A URL name nobody classified fails `test_every_url_name_is_classified`: add it to URLS (README, "Permissions").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.contenttypes.models import ContentType
from django.db import router
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RoutePattern
from django_rq.queues import get_queues_list

from sandbox.models import ROW_MODELS
from tests.permissions.conftest import (
    KINDS,
    NOBODY,
    RUN_SYNC,
    SKIP,
    STAFF,
    SUPERUSER,
    Need,
    changes,
    csrf_client,
    perms,
    rolled_back,
)

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@dataclass(frozen=True)
class Rule:
    get: Need
    post: Need
    changes: str


def model_pages(label: str, **needs: Need):
    """The five pages Django's admin gives a registered model; by default each needs the model's own permission
    (`view`, `add`, `change`, `delete`), or what `needs` says."""
    app, model = label.split(".")
    view, add, change, delete = (needs.get(p, perms(f"{app}.{p}_{model}")) for p in ("view", "add", "change", "delete"))
    prefix = f"admin:{app}_{model}_"
    return {
        prefix + "changelist": Rule(view, view, "nothing itself (a POST runs an action: see test_actions.py)"),
        prefix + "add": Rule(add, add, f"adds a {model}"),
        prefix + "change": Rule(view, change, f"changes the {model}"),
        prefix + "delete": Rule(delete, delete, f"deletes the {model}"),
        prefix + "history": Rule(view, view, "nothing"),
    }


RQ_DASHBOARD = perms("django_rq.admin")


def rq(changes: str) -> Rule:
    return Rule(RQ_DASHBOARD, RQ_DASHBOARD, changes)


VIEW_MAPPING = perms("mappings.view_tablemapping")
OWN_CREDENTIALS = Rule(NOBODY, NOBODY, "the emulated service or our receiver: its own token or secret, no session")

URLS: dict[str, Rule] = {
    # The admin site
    "admin:index": Rule(STAFF, STAFF, "nothing"),
    # The start page (the health dashboard above the model list); each section shows what the user may view
    "dashboard": Rule(STAFF, STAFF, "nothing"),
    "admin:login": Rule(SKIP, SKIP, "the login page, for everyone"),
    # A POST ends the user's own session (and would end this test's); a GET is refused (test_admin_login_required).
    "admin:logout": Rule(SKIP, SKIP, "the user's own session"),
    "admin:password_change": Rule(STAFF, STAFF, "the user's own password"),
    "admin:password_change_done": Rule(STAFF, STAFF, "nothing"),
    "admin:autocomplete": Rule(NOBODY, NOBODY, "nothing: no admin has autocomplete fields"),
    "admin:jsi18n": Rule(STAFF, STAFF, "nothing"),
    "admin:view_on_site": Rule(STAFF, STAFF, "nothing: no model has a page on a site"),
    "admin:app_list": Rule(perms("jobs.view_syncjob"), perms("jobs.view_syncjob"), "nothing"),
    # Users and groups
    **model_pages("auth.group"),
    **model_pages("auth.user"),
    "admin:auth_user_password_change": Rule(perms("auth.change_user"), perms("auth.change_user"), "a password"),
    # Connections
    **model_pages("connectors.connection"),
    "admin:connectors_connection_test": Rule(
        NOBODY, perms("connectors.change_connection"), "nothing; asks the service for a token and one row"
    ),
    # Table mappings
    **model_pages("mappings.tablemapping"),
    "admin:mappings_tablemapping_couple": Rule(
        VIEW_MAPPING, perms("mappings.view_tablemapping", RUN_SYNC), "couples two records, may start a records sync"
    ),
    "admin:mappings_tablemapping_match_coupling": Rule(
        VIEW_MAPPING, perms("mappings.view_tablemapping", RUN_SYNC), "the match criteria; queues a coupling job"
    ),
    "admin:mappings_tablemapping_full_sync_review": Rule(VIEW_MAPPING, perms(RUN_SYNC), "queues full syncs"),
    "admin:mappings_tablemapping_sync_all": Rule(NOBODY, perms(RUN_SYNC), "queues a sync of every mapping"),
    "admin:mappings_tablemapping_reset": Rule(
        perms("mappings.change_tablemapping"), perms("mappings.change_tablemapping"), "resets mappings to defaults"
    ),
    "admin:mappings_tablemapping_export": Rule(VIEW_MAPPING, VIEW_MAPPING, "nothing"),
    "admin:mappings_tablemapping_import": Rule(
        perms("mappings.change_tablemapping", "mappings.add_tablemapping"),
        perms("mappings.change_tablemapping", "mappings.add_tablemapping"),
        "adds, changes (and may delete) mappings",
    ),
    "admin:mappings_tablemapping_transformation_preview": Rule(VIEW_MAPPING, VIEW_MAPPING, "nothing"),
    "admin:mappings_tablemapping_test_filter": Rule(VIEW_MAPPING, VIEW_MAPPING, "nothing; counts remote records"),
    **model_pages("mappings.mappingchange", add=NOBODY, change=NOBODY, delete=NOBODY),
    # Couplings
    # A coupling is changed only by actions (uncouple, synchronize, resolve): its page is read-only, not deletable.
    **model_pages("coupling.coupling", add=NOBODY, change=NOBODY, delete=NOBODY),
    "admin:coupling_coupling_compare": Rule(
        perms("coupling.view_coupling"),
        perms("coupling.view_coupling", RUN_SYNC),
        "writes the chosen values to both systems, or starts a records sync",
    ),
    **model_pages("coupling.ambiguousmatch", add=NOBODY, change=NOBODY),
    # Records a deletion policy keeps uncoupled: deleting an entry forgets the choice (runs may create its partner).
    **model_pages("coupling.keptrecord", add=NOBODY, change=NOBODY),
    # Jobs, errors, schedules, subscriptions
    **model_pages("jobs.syncjob", add=NOBODY, change=NOBODY),
    "admin:jobs_syncjob_progress": Rule(perms("jobs.view_syncjob"), perms("jobs.view_syncjob"), "nothing"),
    "admin:jobs_syncjob_previews": Rule(perms("jobs.view_syncjob"), perms("jobs.view_syncjob"), "nothing"),
    "admin:jobs_syncjob_cancel": Rule(NOBODY, perms("jobs.view_syncjob", RUN_SYNC), "asks the job to stop"),
    **model_pages("jobs.syncerror", add=NOBODY, change=NOBODY),
    **model_pages("jobs.reconciliation", add=NOBODY, change=NOBODY),
    "admin:jobs_syncerror_retry_class": Rule(NOBODY, perms(RUN_SYNC), "queues records syncs"),
    **model_pages("jobs.schedule", add=NOBODY, change=perms("jobs.change_schedule", RUN_SYNC), delete=NOBODY),
    **model_pages("jobs.webhooksubscription", add=NOBODY),
    # Alerts: rules and channels are configuration; incidents are written by the evaluation only
    **model_pages("operations.alertchannel"),
    "admin:operations_alertchannel_send_test": Rule(
        NOBODY, perms("operations.change_alertchannel"), "sends a test message to the channel"
    ),
    **model_pages("operations.alertrule"),
    **model_pages("operations.incident", add=NOBODY, change=NOBODY),
    # For the platform team: /metrics answers only its own bearer token, /healthz anyone, with no data but ok/failing
    "metrics": Rule(NOBODY, NOBODY, "nothing: its own bearer token (METRICS_TOKEN), never a session"),
    "healthz": Rule(SKIP, SKIP, "nothing: open to a load balancer by design, ok/failing only (tests/operations)"),
    # The sandbox's admin pages
    **model_pages("sandbox.fault", view=SUPERUSER, add=SUPERUSER, change=SUPERUSER, delete=SUPERUSER),
    **model_pages("sandbox.setting", view=SUPERUSER, add=SUPERUSER, change=SUPERUSER, delete=SUPERUSER),
    "admin:sandbox_out_of_band_edit": Rule(SUPERUSER, SUPERUSER, "changes or deletes emulated records"),
    # The emulated tables: read-only for everybody (even a superuser), seen with their view permission.
    **{
        name: rule
        for model in ROW_MODELS.values()
        for name, rule in model_pages(
            f"sandbox.{model._meta.model_name}", add=NOBODY, change=NOBODY, delete=NOBODY
        ).items()
    },
    # The RQ dashboard
    "django_rq:home": rq("nothing (it cleans RQ's registries)"),
    "django_rq:home_json": rq("nothing"),
    "django_rq:jobs": rq("nothing"),
    "django_rq:queue_details": rq("nothing"),
    "django_rq:finished_jobs": rq("nothing"),
    "django_rq:failed_jobs": rq("nothing"),
    "django_rq:delete_failed_jobs": rq("deletes the failed jobs"),
    "django_rq:scheduled_jobs": rq("nothing"),
    "django_rq:started_jobs": rq("nothing"),
    "django_rq:deferred_jobs": rq("nothing"),
    "django_rq:clear": rq("empties the queue"),
    "django_rq:requeue_all": rq("requeues every failed job"),
    "django_rq:job_detail": rq("nothing"),
    "django_rq:result_detail": rq("nothing"),
    "django_rq:delete_job": rq("deletes the job"),
    "django_rq:requeue_job": rq("requeues the job"),
    "django_rq:enqueue_job": rq("enqueues a deferred or scheduled job"),
    "django_rq:stop_job": rq("stops the job"),
    "django_rq:confirm_action": rq("nothing (asks to confirm)"),
    "django_rq:actions": rq("deletes, requeues or stops the chosen jobs"),
    "django_rq:workers": rq("nothing"),
    "django_rq:worker_details": rq("nothing"),
    "django_rq:scheduler_jobs": rq("nothing"),
    "django_rq:cron_scheduler_detail": rq("nothing"),
    "django_rq:cron_job_detail": rq("nothing"),
    "django_rq:metrics": rq("nothing: RQ's own Prometheus metrics, there because prometheus_client is installed"),
    # Authenticated by their own secret or token, never by the admin's session
    "webhooks:business_central": OWN_CREDENTIALS,
    "webhooks:dataverse": OWN_CREDENTIALS,
    "sandbox:token": OWN_CREDENTIALS,
    "sandbox:bc-root": OWN_CREDENTIALS,
    "sandbox:bc": OWN_CREDENTIALS,
    "sandbox:bc-custom": OWN_CREDENTIALS,
    "sandbox:dataverse-root": OWN_CREDENTIALS,
    "sandbox:dataverse": OWN_CREDENTIALS,
}


def named_patterns(resolver: URLResolver, namespace: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if entry.namespace else namespace
            yield from named_patterns(entry, inner.strip(":"))
        elif entry.name:
            yield (f"{namespace}:{entry.name}" if namespace else entry.name), entry


def _parameters(pattern: URLPattern) -> list[str]:
    if isinstance(pattern.pattern, RoutePattern):
        return list(pattern.pattern.converters)
    return list(re.compile(str(pattern.pattern)).groupindex)


def _model_of(name: str):
    """The registered model whose admin serves the URL name (`admin:<app>_<model>_...`)."""
    from django.contrib import admin

    for model in admin.site._registry:
        if name.startswith(f"admin:{model._meta.app_label}_{model._meta.model_name}_"):
            return model
    return None


def _sample(name: str, parameter: str, world: dict):
    if name == "admin:view_on_site" and parameter == "object_id":
        return str(world["mapping"].pk)
    if parameter in ("object_id", "pk", "id"):
        model = _model_of(name)
        return str(model._base_manager.using(router.db_for_read(model)).order_by("pk").first().pk)
    return {
        "app_label": "jobs",
        "content_type_id": ContentType.objects.get_for_model(world["mapping"]).pk,
        "queue_index": [q["name"] for q in get_queues_list()].index("default"),
        "scheduler_index": 0,
        "connection_index": 0,
        "job_id": world["rq_job_id"],
        "token": "00000000-0000-0000-0000-000000000000" if name.startswith("webhooks:") else "x",
        "key": "rq:worker:nobody",
        "tenant": "demo",
        "environment": "production",
        "rest": "companies",
        "route": "contoso/projects/v1.0",
    }.get(parameter, "x")


def concrete_urls(world: dict):
    """(name, url, rule) for every classified named URL, with values that reach real rows and the queued RQ job."""
    for name, pattern in named_patterns(get_resolver()):
        if name not in URLS:
            continue
        kwargs = {p: _sample(name, p, world) for p in _parameters(pattern)}
        yield name, reverse(name, kwargs=kwargs), URLS[name]


def _post_data(name: str, world: dict, token: str) -> dict:
    """The body of a POST: the CSRF token, and for the pages that act on chosen items, the items."""
    data = {"csrfmiddlewaretoken": token}
    if name == "django_rq:actions":
        data |= {"action": "delete", "job_ids": [world["rq_job_id"]]}
    if name == "admin:sandbox_out_of_band_edit":
        data |= {"table": "bc:customers", "record_id": world["bc_customer_id"], "action": "delete", "values": ""}
    return data


def refused(response) -> bool:
    login = response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    return login or response.status_code in (400, 401, 403, 404, 405)


def let_in(response) -> bool:
    # Past the permission check; what the page then answers is its own tests' business (django-rq's scheduler page,
    # for one, fails without rq-scheduler installed).
    login = response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    return not login and response.status_code not in (401, 403)


def test_every_url_name_is_classified():
    names = {name for name, _ in named_patterns(get_resolver())}

    unclassified = sorted(names - URLS.keys())
    assert not unclassified, (
        f"Classify these URL names in URLS of {__file__} (who may GET and POST them, what they change), and add "
        f"them to the README's permission table: {unclassified}"
    )
    assert sorted(URLS.keys() - names) == [], "URLS names pages that no longer exist: remove them"


@pytest.mark.parametrize("kind", KINDS)
def test_each_url_lets_in_only_the_users_it_is_classified_for_and_the_others_change_nothing(
    kind, user_of, world, state
):
    user = user_of(kind) or AnonymousUser()
    client = csrf_client(None if kind == "anonymous" else user)
    failures = []
    before = None  # the state, once known: a refused request leaves it as it was, so it is taken again only after
    for name, url, rule in concrete_urls(world):  # an allowed request (Redis is not rolled back)
        for method, need in (("GET", rule.get), ("POST", rule.post)):
            if need.rule == "skip":
                continue
            allowed = need.allows(user)
            if not allowed and before is None:
                before = state()
            with rolled_back():
                if method == "GET":
                    response = client.get(url)
                else:
                    response = client.post(url, _post_data(name, world, client.csrf_token))
                after = None if allowed else state()
            said = f"{method} {url} ({name}, needs {need}) answered {response.status_code} to {kind}"
            if allowed and not let_in(response):
                failures.append(f"{said}: it should let them in")
            if not allowed and not refused(response):
                failures.append(f"{said}: it should refuse")
            if not allowed and before != after:
                failures.append(f"{said}, and changed {changes(before, after)}")
            if allowed or before != after:
                before = None

    assert not failures, "\n".join(failures)
