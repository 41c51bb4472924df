"""`manage.py demo_setup` prepares a working demo against the sandbox, and running it again duplicates nothing."""

import re
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from mappings.models import TableMapping

PASSWORD_LINE = re.compile(r"Created the login 'admin' with password (\S+)")


def demo_setup() -> str:
    out = StringIO()
    call_command("demo_setup", stdout=out)
    return out.getvalue()


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_the_demo_connections_reach_the_seeded_sandbox(sandbox_http):
    demo_setup()

    bc = Connection.objects.get(name="Sandbox Business Central")
    dataverse = Connection.objects.active(ConnectionKind.DATAVERSE)
    assert bc.environment_url == f"http://127.0.0.1:{settings.PORT}/sandbox/bc"
    assert dataverse.environment_url == f"http://127.0.0.1:{settings.PORT}/sandbox/dataverse"
    assert bc.token_url == dataverse.token_url
    assert bc.token_url.startswith(f"http://127.0.0.1:{settings.PORT}/sandbox/oauth/")
    with open_client(bc) as bc_client, open_client(dataverse) as dataverse_client:
        assert bc_client.count("customers") >= 300
        assert dataverse_client.count("accounts") >= 250


@pytest.mark.django_db(databases=["default", "sandbox"])
def test_the_demo_has_two_companies_sharing_customers_and_one_dataverse(sandbox_http):
    demo_setup()

    first = Connection.objects.get(name="Sandbox Business Central")
    second = Connection.objects.get(name="Sandbox Business Central Canada")
    assert first.bc_company_id != second.bc_company_id and first.environment_url == second.environment_url
    assert Connection.objects.filter(kind=ConnectionKind.DATAVERSE).count() == 1
    # Each company has its own five default mappings; the second's CUSTOMER shares accounts (multi-company).
    for company in (first, second):
        assert TableMapping.objects.filter(company=company, is_default=True).count() == 5
    assert not TableMapping.objects.filter(company__isnull=True).exists()
    assert TableMapping.objects.get(company=second, name="CUSTOMER").multi_company
    with open_client(first) as client_a, open_client(second) as client_b:
        names_a = {
            r["displayName"] for page in client_a.read_pages("customers", select=["displayName"]) for r in page.rows
        }
        names_b = {
            r["displayName"] for page in client_b.read_pages("customers", select=["displayName"]) for r in page.rows
        }
    assert len(names_b) >= 100 and len(names_a & names_b) >= 30  # customers both companies have


# Seeding the sandbox takes a second or two, so each test below runs demo_setup as few times as it can.
@pytest.mark.django_db(databases=["default", "sandbox"])
def test_a_second_run_keeps_everything_and_duplicates_nothing():
    first = demo_setup()
    connections = {c.name: (c.pk, c.client_id, c.client_secret) for c in Connection.objects.all()}
    second = demo_setup()

    assert {c.name: (c.pk, c.client_id, c.client_secret) for c in Connection.objects.all()} == connections
    assert TableMapping.objects.filter(is_default=True).count() == 10  # five per company
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert "Sandbox data: already seeded" in second
    # The demo lets the first "Synchronize modified records" create and couple accounts, and says so once.
    assert {m.sync_only_coupled for m in TableMapping.objects.filter(name="CUSTOMER")} == {False}
    assert "synchronize only coupled records" in first
    assert "synchronize only coupled records" not in second
    # The admin password is generated, works, and is shown only once.
    password = PASSWORD_LINE.search(first).group(1)
    assert len(password) >= 12
    assert authenticate(username="admin", password=password) is not None
    assert password not in second
    assert "changepassword admin" in second
    # The client secret is generated, kept encrypted, and never printed.
    secret = Connection.objects.get(kind=ConnectionKind.DATAVERSE).client_secret
    assert len(secret) >= 32
    assert secret not in first + second
    for connection in Connection.objects.all():
        assert secret not in connection.client_secret_encrypted
        assert secret not in repr(connection)
