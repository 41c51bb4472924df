"""The pages that act on a POST check their permission themselves; each test below fails if its check is removed:
a user without the permission is refused and nothing happens, one with it gets through.

- retry by class (jobs.run_sync): no job is queued;
- match-based coupling (jobs.run_sync): the criteria stay, no coupling job is queued;
- resolving a conflict field by field (jobs.run_sync): nothing is written to either system;
- "Test connection", the button and the action (change permission on connections): the service is not asked.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.urls import reverse

from connectors.choices import ConnectionKind
from connectors.models import Connection
from coupling.models import Coupling
from coupling.remote_records import BC, DATAVERSE
from jobs.choices import ErrorClass, JobKind
from jobs.models import SyncError, SyncJob
from mappings.choices import Direction
from mappings.models import TableMapping
from tests.permissions.conftest import csrf_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return TableMapping.objects.get(name="CUSTOMER")


@pytest.fixture
def client_of(user_of):
    """A CSRF-checking client logged in as the kind of user, and the token its POSTs send."""

    def make(kind: str):
        client = csrf_client(user_of(kind))
        return client, {"csrfmiddlewaretoken": client.csrf_token}

    return make


# -- retry by class --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "allowed"), [("viewer", False), ("editor", False), ("runner", True)])
def test_retry_by_class_needs_the_run_sync_permission(client_of, customer, kind, allowed):
    job = SyncJob.objects.create(table_mapping=customer, direction=Direction.TO_DATAVERSE)
    SyncError.objects.create(
        job=job,
        table_mapping=customer,
        direction=Direction.TO_DATAVERSE,
        bc_id="7f0e5a4e-0000-4000-8000-000000000001",
        error_class=ErrorClass.CONFLICT,
        message="Both records changed.",
    )
    client, token = client_of(kind)

    data = {**token, "error_class": ErrorClass.CONFLICT, "confirm": "yes"}
    response = client.post(reverse("admin:jobs_syncerror_retry_class"), data)

    records_jobs = SyncJob.objects.filter(kind=JobKind.RECORDS).count()
    if allowed:
        assert response.status_code == 302 and records_jobs == 1
    else:
        assert response.status_code == 403 and records_jobs == 0


# -- match-based coupling --------------------------------------------------------------------------------------------


def _match_form(mapping: TableMapping) -> dict:
    """The match page's form, ticking the first field to match on and both settings (all different from now)."""
    criteria = list(
        mapping.field_mappings.filter(enabled=True)
        .exclude(bc_field="")
        .exclude(dataverse_field="")
        .order_by("position", "id")
    )
    data = {"form-TOTAL_FORMS": len(criteria), "form-INITIAL_FORMS": len(criteria)}
    for index, field_mapping in enumerate(criteria):
        data |= {f"form-{index}-id": field_mapping.pk, f"form-{index}-match_priority": 7}
    data |= {"form-0-use_for_matching": "on", "create_new_if_no_match": "on", "sync_after_match_coupling": "on"}
    return data


def _match_state(mapping: TableMapping):
    mapping.refresh_from_db()
    criteria = list(mapping.field_mappings.order_by("pk").values_list("use_for_matching", "match_priority"))
    return mapping.create_new_if_no_match, mapping.sync_after_match_coupling, criteria


@pytest.mark.parametrize(("kind", "allowed"), [("viewer", False), ("editor", False), ("runner", True)])
def test_match_based_coupling_needs_the_run_sync_permission(client_of, customer, kind, allowed):
    customer.field_mappings.update(use_for_matching=False, match_priority=1)
    customer.create_new_if_no_match = customer.sync_after_match_coupling = False
    customer.save()
    before = _match_state(customer)
    client, token = client_of(kind)

    url = reverse("admin:mappings_tablemapping_match_coupling", args=[customer.pk])
    response = client.post(url, {**token, **_match_form(customer), "confirm": "yes"})

    coupling_jobs = SyncJob.objects.filter(kind=JobKind.COUPLING).count()
    if allowed:
        assert response.status_code == 302 and coupling_jobs == 1
        assert _match_state(customer) != before
    else:
        assert response.status_code == 403 and coupling_jobs == 0
        assert _match_state(customer) == before


# -- resolving a conflict ----------------------------------------------------------------------------------------------


@pytest.fixture
def resolutions(monkeypatch):
    """Each resolution the compare page asks for (none reaches a remote system in these tests)."""
    asked = []

    @contextmanager
    def no_clients():
        yield None, None

    def conflict_resolve(**kwargs):
        asked.append(kwargs["winners"])
        return {DATAVERSE: 1, BC: 0}

    monkeypatch.setattr("jobs.admin.couplings.connected_clients", no_clients)
    monkeypatch.setattr("jobs.admin.couplings.conflict_resolve", conflict_resolve)
    return asked


@pytest.mark.parametrize(("kind", "allowed"), [("viewer", False), ("editor", False), ("runner", True)])
def test_resolving_a_conflict_needs_the_run_sync_permission(client_of, customer, resolutions, kind, allowed):
    coupling = Coupling.objects.create(
        table_mapping=customer,
        bc_id="7f0e5a4e-0000-4000-8000-000000000002",
        dataverse_id="7f0e5a4e-0000-4000-8000-000000000003",
    )
    field = customer.field_mappings.first()
    client, token = client_of(kind)

    url = reverse("admin:coupling_coupling_compare", args=[coupling.pk])
    response = client.post(url, {**token, "resolve": "1", f"winner_{field.pk}": "bc"})

    if allowed:
        assert response.status_code == 302 and resolutions == [{field.pk: "bc"}]
    else:
        assert response.status_code == 403 and resolutions == []


# -- testing a connection ----------------------------------------------------------------------------------------------


@pytest.fixture
def connection_tests(monkeypatch):
    """The connections the admin asked to test (none reaches a service in these tests)."""
    from connectors.services import ConnectionTestResult

    asked = []

    def connection_test(*, connection):
        asked.append(connection.pk)
        return ConnectionTestResult(True, "Connected.")

    monkeypatch.setattr("connectors.admin.connection_test", connection_test)
    return asked


@pytest.fixture
def connection():
    return Connection.objects.create(
        kind=ConnectionKind.DATAVERSE, name="Dataverse", environment_url="https://example.crm.dynamics.com"
    )


@pytest.mark.parametrize(("kind", "allowed"), [("viewer", False), ("runner", False), ("editor", True)])
def test_the_test_connection_button_needs_the_change_permission(client_of, connection, connection_tests, kind, allowed):
    client, token = client_of(kind)

    response = client.post(reverse("admin:connectors_connection_test", args=[connection.pk]), token)

    if allowed:
        assert response.status_code == 302 and connection_tests == [connection.pk]
    else:
        assert response.status_code == 403 and connection_tests == []


@pytest.mark.parametrize(("kind", "allowed"), [("viewer", False), ("runner", False), ("editor", True)])
def test_the_test_connection_action_needs_the_change_permission(client_of, connection, connection_tests, kind, allowed):
    client, token = client_of(kind)

    response = client.post(
        reverse("admin:connectors_connection_changelist"),
        {**token, "action": "test_connections", "_selected_action": [connection.pk], "index": "0"},
    )

    if allowed:
        assert response.status_code == 302 and connection_tests == [connection.pk]
    else:  # the list again (no action offered) or "No action selected."
        assert response.status_code in (200, 302) and connection_tests == []


@pytest.mark.parametrize(("kind", "shown"), [("viewer", False), ("runner", False), ("editor", True)])
def test_the_test_connection_button_is_shown_only_to_users_who_may_use_it(client_of, connection, kind, shown):
    client, _token = client_of(kind)

    page = client.get(reverse("admin:connectors_connection_change", args=[connection.pk])).content.decode()

    assert ("Test connection" in page) is shown
