"""The kinds of user the permission tests try every page and action as, a state to compare before and after, and a
small world of rows, remote records and a queued RQ job for the pages to act on.

The kinds (README, "Permissions"):
- anonymous: not logged in;
- staff: may log in to the admin, no permission;
- viewer: every view permission of the product (and of the sandbox's models);
- runner: the viewer's permissions and `jobs.run_sync`;
- editor: every view, add, change and delete permission of the product and the sandbox's models, without run_sync;
- superuser.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import rq
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connections, router, transaction
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.utils import timezone


@dataclass(frozen=True)
class Need:
    """Who may use a page, a method of it or an action: `perms` all held by a staff user, or a special rule."""

    rule: str  # "perms", "staff", "superuser", "nobody", "skip"
    perms: tuple[str, ...] = ()

    def allows(self, user) -> bool:
        if self.rule == "nobody" or not user.is_authenticated or not user.is_active:
            return False
        if self.rule == "staff":
            return user.is_staff
        if self.rule == "superuser":
            return user.is_superuser
        return user.is_staff and all(user.has_perm(p) for p in self.perms)

    def __str__(self):
        return ", ".join(self.perms) if self.rule == "perms" else self.rule


def perms(*names: str) -> Need:
    return Need("perms", names)


STAFF = Need("staff")
SUPERUSER = Need("superuser")
NOBODY = Need("nobody")  # every user is refused (the method is not allowed, or the page has its own credentials)
SKIP = Need("skip")  # not tried, for the reason given where it is classified
RUN_SYNC = "jobs.run_sync"

KINDS = ("anonymous", "staff", "viewer", "runner", "editor", "superuser")
PERMISSION_APPS = ("connectors", "mappings", "coupling", "jobs", "operations", "sandbox")
# The client's session changes with each request's messages; it is no data of the product.
NOT_STATE = {"sessions.Session"}


def make_user(kind: str, django_user_model):
    """A user of the kind (None for anonymous)."""
    if kind == "anonymous":
        return None
    if kind == "superuser":
        return django_user_model.objects.create_superuser(kind, f"{kind}@example.com", "pw")
    user = django_user_model.objects.create_user(kind, password="pw", is_staff=True)
    ours = Permission.objects.filter(content_type__app_label__in=PERMISSION_APPS)
    granted = {
        "staff": ours.none(),
        "viewer": ours.filter(codename__startswith="view_"),
        "runner": ours.filter(codename__startswith="view_") | ours.filter(codename="run_sync"),
        "editor": ours.exclude(codename="run_sync"),
    }[kind]
    user.user_permissions.add(*granted)
    return django_user_model.objects.get(pk=user.pk)  # no cached permissions


def csrf_client(user) -> Client:
    """A client that checks CSRF as a browser would, logged in as `user`, with a valid token in `client.csrf_token`:
    every POST of the tests carries it, so a refusal is the permission's, never the CSRF check's."""
    from django.conf import settings

    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    client.csrf_token = _get_new_csrf_string()
    client.cookies[settings.CSRF_COOKIE_NAME] = client.csrf_token
    return client


@pytest.fixture
def user_of(django_user_model):
    return lambda kind: make_user(kind, django_user_model)


def _redis_state(connection) -> dict:
    state = {}
    for key in sorted(connection.scan_iter()):
        kind = connection.type(key)
        if kind == b"list":
            state[key] = connection.lrange(key, 0, -1)
        elif kind == b"zset":
            state[key] = connection.zrange(key, 0, -1)
        elif kind == b"hash":
            state[key] = sorted(connection.hgetall(key).items())
        elif kind == b"set":
            state[key] = sorted(connection.smembers(key))
        else:
            state[key] = connection.get(key)
    return state


def _database_state() -> dict:
    """Each table's rows, in primary key order, as one hash (raw SQL: this runs around a thousand times a test)."""
    state = {}
    for model in apps.get_models(include_auto_created=True):
        if not model._meta.managed or model._meta.label in NOT_STATE:
            continue
        connection = connections[router.db_for_read(model)]
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {quote(model._meta.db_table)} ORDER BY {quote(model._meta.pk.column)}")
            state[model._meta.label] = hash(tuple(cursor.fetchall()))
    return state


@pytest.fixture
def state(redis_connection):
    """Everything a request could change: every row of both databases (ours and the sandbox's) and every Redis key
    (queues, jobs, registries). Compare two calls to see what changed."""

    def snapshot() -> dict:
        return {"rows": _database_state(), "redis": _redis_state(redis_connection)}

    return snapshot


def changes(before: dict, after: dict) -> list[str]:
    """What differs, by table or Redis key (for the failure message)."""
    found = []
    for part in ("rows", "redis"):
        for key in sorted(set(before[part]) | set(after[part]), key=str):
            if before[part].get(key) != after[part].get(key):
                found.append(f"{part}: {key}")
    return found


@contextmanager
def rolled_back():
    """Whatever the request does to either database is undone afterwards (Redis is not: compare it)."""
    with transaction.atomic(using="default"), transaction.atomic(using="sandbox"):
        yield
        transaction.set_rollback(True, using="default")
        transaction.set_rollback(True, using="sandbox")


@pytest.fixture
def world(sandbox_connections, redis_connection):
    """One row of each model the admin shows, connections to the seeded sandbox, and a job waiting in RQ's default
    queue: something for every page to show, change or delete."""
    from connectors.choices import ConnectionKind
    from connectors.clients import open_client
    from connectors.types import WriteOperation
    from coupling.models import AmbiguousMatch, Coupling, KeptRecord
    from jobs.choices import ErrorClass, JobStatus
    from jobs.models import Reconciliation, Schedule, SyncError, SyncJob, WebhookSubscription
    from mappings.choices import Direction
    from mappings.companies import dataverse_company_row
    from mappings.models import MappingChange, TableMapping
    from operations.models import AlertChannel, AlertRule, ChannelKind, Incident, RuleKind
    from sandbox.models import Fault, Setting

    mapping = TableMapping.objects.get(name="CUSTOMER")
    coupling = Coupling.objects.create(
        table_mapping=mapping, bc_id=uuid.uuid4(), dataverse_id=uuid.uuid4(), bc_name="A", dataverse_name="A"
    )
    AmbiguousMatch.objects.create(
        table_mapping=mapping,
        side=ConnectionKind.BUSINESS_CENTRAL,
        record_id=uuid.uuid4(),
        record_name="B",
        candidates=[],
    )
    KeptRecord.objects.create(
        table_mapping=mapping,
        side=ConnectionKind.DATAVERSE,
        record_id=uuid.uuid4(),
        record_name="C",
        reason="Its coupled Business Central record was deleted.",
    )
    job = SyncJob.objects.create(table_mapping=mapping, direction=Direction.TO_DATAVERSE, status=JobStatus.QUEUED)
    SyncError.objects.create(
        job=job,
        table_mapping=mapping,
        direction=Direction.TO_DATAVERSE,
        bc_id=coupling.bc_id,
        error_class=ErrorClass.CONFLICT,
        message="Both records changed.",
    )
    Reconciliation.objects.create(
        table_mapping=mapping,
        status=JobStatus.SUCCEEDED,
        counts={"coupled": 1, "orphans": 1, "drift": 1},
        findings={
            "orphans": [[coupling.pk, "bc"]],
            "drift": [{"coupling": coupling.pk, "direction": Direction.TO_DATAVERSE, "fields": ["name"]}],
        },
    )
    subscription = WebhookSubscription(table_mapping=mapping, side=ConnectionKind.DATAVERSE)
    subscription.set_secret("s" * 20)
    subscription.save()
    MappingChange.objects.create(action=MappingChange.Action.IMPORT, summary="-", mapping_names="CUSTOMER")
    channel = AlertChannel.objects.create(name="operators", kind=ChannelKind.EMAIL, email_to="ops@example.com")
    rule = AlertRule.objects.create(name="CUSTOMER failed", kind=RuleKind.RUN_FAILED, table_mapping=mapping)
    rule.channels.add(channel)
    Incident.objects.create(
        rule=rule, subject=f"mapping:{mapping.pk}", subject_name="CUSTOMER", summary="-", opened_at=timezone.now()
    )
    Group.objects.create(name="operators")
    get_user_model().objects.create_user("someone")
    Fault.objects.create(kind="throttle", service="bc", remaining=0)  # spent: the sandbox answers as usual
    Setting.objects.get_or_create(key="token_lifetime", defaults={"value": 3599})
    queue = rq.Queue("default", connection=redis_connection)
    rq_job = queue.enqueue("os.getcwd")  # never run: no worker in these tests
    with open_client(sandbox_connections[0]) as client:
        bc_customer_id = next(iter(client.read_pages("customers", page_size=1))).rows[0]["id"]
        # A row in every emulated table the admin lists (the seed fills the default tables), written through the APIs.
        projects = "contoso/projects/v1.0/"
        for operation in [
            WriteOperation("create", "items", "i", {"displayName": "Bicycle"}),
            WriteOperation("create", projects + "projectTypes", "t", {"code": "FIT", "description": "Fit-out"}),
            WriteOperation("create", projects + "projects", "p", {"description": "Fit-out", "status": "Open"}),
        ]:
            assert all(result.ok for result in client.write_many([operation])), operation
    with open_client(sandbox_connections[1]) as dataverse_client:
        dataverse_company_row(sandbox_connections[0], dataverse_client)  # as a first run of a stamping mapping does
        written = dataverse_client.write_many(
            [
                WriteOperation("create", "products", "p", {"name": "Bicycle", "productnumber": "1000"}),
                WriteOperation("create", "cr123_projects", "c", {"cr123_name": "Fit-out"}),
            ]
        )
        assert all(result.ok for result in written)
    return {
        "mapping": mapping,
        "bc_customer_id": bc_customer_id,
        "coupling": coupling,
        "schedule": Schedule.objects.get(table_mapping=mapping),
        "rq_job_id": rq_job.id,
        "rq_queue": queue,
        "connections": sandbox_connections,
    }
