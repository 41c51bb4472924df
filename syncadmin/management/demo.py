"""Prepare a one-machine demo: default mappings, sandbox data, connections to the sandbox, an admin login.

Every step is idempotent, so `make run` can call it on every start: it keeps the data and duplicates nothing.
Each function returns the lines to tell the person running it.
"""

import secrets
import uuid

from django.contrib.auth import get_user_model
from django.db import transaction

from connectors.choices import ConnectionKind
from connectors.models import Connection
from connectors.secrets import SecretUnreadable
from mappings.choices import Direction
from mappings.defaults import create_default_mappings
from mappings.models import FieldMapping, TableMapping
from sandbox import services as sandbox

ADMIN_USERNAME = "admin"
DEMO_CONNECTION_NAMES = {
    ConnectionKind.BUSINESS_CENTRAL: "Sandbox Business Central",
    ConnectionKind.DATAVERSE: "Sandbox Dataverse",
}
# The sandbox environment's second company: a second Business Central connection, synchronizing with the same Dataverse.
SECOND_COMPANY_CONNECTION = "Sandbox Business Central Canada"
DEMO_NAMES = [*DEMO_CONNECTION_NAMES.values(), SECOND_COMPANY_CONNECTION]
SANDBOX_PATHS = {ConnectionKind.BUSINESS_CENTRAL: "bc", ConnectionKind.DATAVERSE: "dataverse"}


def demo_mappings_create() -> list[str]:
    """The default mappings of each demo company (before the connections exist: of no company, which the first
    company then takes over)."""
    companies = list(Connection.objects.filter(name__in=DEMO_NAMES, kind=ConnectionKind.BUSINESS_CENTRAL))
    if not companies:
        mappings = create_default_mappings()
        return [f"Default table mappings: {', '.join(mapping.name for mapping in mappings)}."]
    messages = []
    for company in sorted(companies, key=lambda c: c.pk):
        mappings = create_default_mappings(company=company)
        messages.append(f"Default table mappings of {company.name}: {', '.join(m.name for m in mappings)}.")
    return messages


def demo_companies_share_customers() -> list[str]:
    """The mappings made before the demo companies existed belong to the first; the second company's CUSTOMER is
    multi-company, matched by name, so that the customers both companies have are coupled to one account."""
    first = Connection.objects.filter(name=DEMO_CONNECTION_NAMES[ConnectionKind.BUSINESS_CENTRAL]).first()
    second = Connection.objects.filter(name=SECOND_COMPANY_CONNECTION).first()
    if first is None or second is None:
        return []
    TableMapping.objects.filter(company__isnull=True).exclude(
        name__in=TableMapping.objects.filter(company=first).values("name")
    ).update(company=first)
    create_default_mappings(company=second)
    customer = TableMapping.objects.get(company=second, name="CUSTOMER")
    if customer.multi_company:
        return []
    customer.multi_company = True
    # It publishes its customers to Dataverse: read both ways, a multi-company mapping would copy the first
    # company's accounts into it (Business Central warns of the same).
    customer.direction = Direction.TO_DATAVERSE
    customer.save(update_fields=["multi_company", "direction"])
    customer.field_mappings.filter(bc_field="displayName", dataverse_field="name").update(use_for_matching=True)
    return [
        f"Two companies share the sandbox's Dataverse: {first.name} and {second.name}; the second's CUSTOMER is "
        "multi-company (to Dataverse), so the customers both have are coupled (by name) to one account, not "
        "created twice."
    ]


def demo_sandbox_seed() -> list[str]:
    # Hundreds of customers and accounts, some of them the same companies, so match-based coupling has work; and a
    # second company, some of whose customers are the first's.
    counts = sandbox.seed_demo(customers=300, accounts=250, shared=60)
    second = sandbox.seed_second_company(customers=120, shared=30)
    added = {table: count for table, count in counts.items() if count}
    added |= {f"{table} (second company)": count for table, count in second.items() if count}
    if not added:
        return ["Sandbox data: already seeded, nothing added."]
    return ["Sandbox data added: " + ", ".join(f"{count} {table}" for table, count in added.items()) + "."]


def _demo_app_registration() -> tuple[str, str]:
    """Return the demo app registration's client id and secret: the existing one, or a new one generated once.

    The secret lives only encrypted in the connections and hashed in the sandbox; it is never printed.
    """
    for connection in Connection.objects.filter(name__in=DEMO_NAMES).order_by("pk"):
        try:
            secret = connection.client_secret
        except SecretUnreadable:  # the encryption key changed: start over with a new secret
            continue
        if secret:
            return connection.client_id, secret
    return str(uuid.uuid4()), secrets.token_urlsafe(32)


def demo_connections_create(*, port: int) -> tuple[list[str], bool]:
    """Point one connection of each kind at the sandbox served by the web process on 127.0.0.1:port.

    Returns the messages and whether this is the first demo setup (the Business Central connection was created).
    """
    client_id, client_secret = _demo_app_registration()
    # Registering again is harmless and repairs a sandbox database that was deleted.
    sandbox.register_client(client_id=client_id, client_secret=client_secret)
    base_url = f"http://127.0.0.1:{port}/sandbox"
    tenant = sandbox.DEMO_TENANT
    messages, first_setup = [], False
    wanted = [
        (
            ConnectionKind.BUSINESS_CENTRAL,
            DEMO_CONNECTION_NAMES[ConnectionKind.BUSINESS_CENTRAL],
            sandbox.demo_company_id(),
        ),
        (ConnectionKind.BUSINESS_CENTRAL, SECOND_COMPANY_CONNECTION, sandbox.second_company_id()),
        (ConnectionKind.DATAVERSE, DEMO_CONNECTION_NAMES[ConnectionKind.DATAVERSE], None),
    ]
    for kind, name, company_id in wanted:
        other = Connection.objects.filter(kind=kind, enabled=True).exclude(name__in=DEMO_NAMES).first()
        if other and not Connection.objects.filter(name=name).exists():
            messages.append(f"Left the enabled {kind.label} connection {other.name!r} as it is: no sandbox connection.")
            continue
        with transaction.atomic():
            connection, created = Connection.objects.select_for_update().get_or_create(
                name=name, defaults={"kind": kind}
            )
            connection.kind = kind
            connection.environment_url = f"{base_url}/{SANDBOX_PATHS[kind]}"
            connection.tenant = tenant
            connection.token_url = f"{base_url}/oauth/{tenant}/oauth2/v2.0/token"
            connection.client_id = client_id
            connection.set_client_secret(client_secret)
            if kind == ConnectionKind.BUSINESS_CENTRAL:
                connection.bc_environment = sandbox.DEMO_ENVIRONMENT
                connection.bc_company_id = company_id
            connection.save()
        messages.append(f"{'Created' if created else 'Updated'} connection {name!r} -> {connection.environment_url}.")
        first_setup = first_setup or (created and kind == ConnectionKind.BUSINESS_CENTRAL)
    return messages, first_setup


def demo_customer_mapping_open() -> list[str]:
    """Let the first "Synchronize modified records" create and couple accounts for uncoupled customers."""
    updated = TableMapping.objects.filter(name="CUSTOMER", sync_only_coupled=True).update(sync_only_coupled=False)
    if not updated:
        return []
    # The companies both systems already have are coupled by name during that sync instead of duplicated.
    FieldMapping.objects.filter(table_mapping__name="CUSTOMER", bc_field="displayName", dataverse_field="name").update(
        use_for_matching=True
    )
    return [
        'Turned off "synchronize only coupled records" on CUSTOMER for the demo: the first "Synchronize modified '
        'records" couples the companies both systems have (matched by name) and creates a Dataverse account for '
        "each other customer (and a customer for each other account)."
    ]


def demo_admin_create() -> list[str]:
    user_model = get_user_model()
    if user_model.objects.filter(username=ADMIN_USERNAME).exists():
        return [
            f"The login {ADMIN_USERNAME!r} exists. Forgot its password? "
            f".venv/bin/python manage.py changepassword {ADMIN_USERNAME}"
        ]
    password = secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=ADMIN_USERNAME, email="", password=password)
    return [
        f"Created the login {ADMIN_USERNAME!r} with password {password}",
        "  (shown only this once; change it with: .venv/bin/python manage.py changepassword admin)",
    ]


def demo_setup(*, port: int) -> list[str]:
    messages = demo_mappings_create()
    messages += demo_sandbox_seed()
    connection_messages, first_setup = demo_connections_create(port=port)
    messages += connection_messages
    messages += demo_companies_share_customers()
    if first_setup:
        messages += demo_customer_mapping_open()
    messages += demo_admin_create()
    return messages
