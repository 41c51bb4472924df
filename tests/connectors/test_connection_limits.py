"""A connection's limits are checked against what each service documents when it is saved (protocols.md 1.5, 1.12,
1.15 and 2.9: Microsoft's "Page results", "Execute batch operations", "Service protection API limits" for Dataverse;
"Operational limits for Business Central online" for Business Central)."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from connectors.choices import ConnectionKind
from connectors.models import AppRegistration, Connection

pytestmark = pytest.mark.django_db


def form_data(kind, **overrides):
    data = {
        "kind": kind,
        "name": f"A {kind} connection",
        "enabled": "on",
        "environment_url": "https://api.businesscentral.dynamics.com",
        "tenant": "contoso.onmicrosoft.com",
        "bc_environment": "production" if kind == ConnectionKind.BUSINESS_CENTRAL else "",
        "bc_company_id": "",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret": "a-secret-for-the-limits-test",
        "client_secret_reference": "",
        "token_url": "",
        "scope": "",
        "page_size": "5000",
        "batch_size": "100",
        "timeout_seconds": "60",
        "max_concurrency": "4",
        # The inline of further app registrations, left empty.
        "app_registrations-TOTAL_FORMS": "0",
        "app_registrations-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("kind", "field", "value", "message"),
    [
        (ConnectionKind.DATAVERSE, "page_size", "5001", "Must be between 1 and 5,000 for Dataverse."),
        (ConnectionKind.BUSINESS_CENTRAL, "page_size", "20001", "Must be between 1 and 20,000 for Business Central."),
        (ConnectionKind.BUSINESS_CENTRAL, "page_size", "0", "Must be between 1 and 20,000 for Business Central."),
        (ConnectionKind.BUSINESS_CENTRAL, "batch_size", "101", "Must be between 1 and 100 for Business Central."),
        (ConnectionKind.DATAVERSE, "batch_size", "1001", "Must be between 1 and 1,000 for Dataverse."),
        (ConnectionKind.BUSINESS_CENTRAL, "max_concurrency", "6", "Must be between 1 and 5 for Business Central."),
        (ConnectionKind.DATAVERSE, "max_concurrency", "53", "Must be between 1 and 52 for Dataverse."),
        (ConnectionKind.DATAVERSE, "timeout_seconds", "601", "Must be between 1 and 600."),
        (ConnectionKind.BUSINESS_CENTRAL, "timeout_seconds", "0", "Must be between 1 and 600."),
    ],
)
def test_a_limit_outside_the_services_documented_range_is_refused_and_nothing_is_saved(
    admin_client, kind, field, value, message
):
    response = admin_client.post(reverse("admin:connectors_connection_add"), form_data(kind, **{field: value}))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Connection.objects.exists()


@pytest.mark.parametrize(
    ("kind", "page_size", "batch_size", "concurrency"),
    [(ConnectionKind.BUSINESS_CENTRAL, "20000", "100", "5"), (ConnectionKind.DATAVERSE, "5000", "1000", "52")],
)
def test_the_largest_documented_values_are_accepted(admin_client, kind, page_size, batch_size, concurrency):
    data = form_data(kind, page_size=page_size, batch_size=batch_size, max_concurrency=concurrency)
    data["timeout_seconds"] = "600"

    response = admin_client.post(reverse("admin:connectors_connection_add"), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Connection.objects.get().page_size == int(page_size)


def test_each_app_registration_brings_its_own_concurrency_limit():
    connection = Connection.objects.create(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name="BC",
        environment_url="https://api.businesscentral.dynamics.com",
        tenant="contoso.onmicrosoft.com",
        bc_environment="production",
        client_id="11111111-2222-3333-4444-555555555555",
    )
    registration = AppRegistration(connection=connection, client_id="22222222-2222-3333-4444-555555555555")
    registration.set_client_secret("a-second-secret")
    registration.save()

    connection.max_concurrency = 10
    connection.full_clean()  # 5 per user, two users
    connection.max_concurrency = 11
    with pytest.raises(ValidationError, match="Must be between 1 and 10 for Business Central"):
        connection.full_clean()
