"""Connection services: test a connection and store its secret. The admin calls these and nothing else."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from connectors.business_central import BusinessCentralClient
from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from connectors.resilience import QUICK_POLICY
from connectors.secrets import SecretUnreadable, validate_secret_reference
from connectors.types import ConnectorError, ErrorKind

logger = logging.getLogger("connectors")

# What "Test connection" reads one row of.
PROBE_ENTITY_SET = {ConnectionKind.BUSINESS_CENTRAL: "customers", ConnectionKind.DATAVERSE: "accounts"}


@dataclass(frozen=True)
class ConnectionTestResult:
    ok: bool
    message: str


def connection_test(*, connection: Connection) -> ConnectionTestResult:
    """Authenticate, read one row, and say plainly what is wrong if anything is."""
    if not connection.has_client_secret:
        return ConnectionTestResult(False, "No client secret is stored: enter it and save the connection first.")
    try:
        connection.client_secret  # noqa: B018 (fails early when the key changed or the reference is unreadable)
    except SecretUnreadable as exc:
        return ConnectionTestResult(False, str(exc))
    if connection.kind == ConnectionKind.BUSINESS_CENTRAL and not connection.bc_environment:
        return ConnectionTestResult(False, "Enter the Business Central environment name (for example production).")
    entity_set = PROBE_ENTITY_SET[ConnectionKind(connection.kind)]
    started = time.monotonic()
    with open_client(connection, retry_policy=QUICK_POLICY) as client:
        step = "authenticate"
        try:
            client.tokens.token(force_new=True)
            if isinstance(client, BusinessCentralClient) and not connection.bc_company_id:
                step = "list companies"
                return _companies_hint(client.companies())
            step = f"read {entity_set}"
            page = next(iter(client.read_pages(entity_set, page_size=1)), None)
        except ConnectorError as error:
            logger.info("Connection test of %r failed at %s: %s", connection, step, error.message)
            return ConnectionTestResult(False, _plain(error, connection, step))
    rows = len(page.rows) if page else 0
    elapsed = time.monotonic() - started
    return ConnectionTestResult(
        True,
        f"Connected: authenticated as application {connection.client_id} and read {rows} row(s) of {entity_set} "
        f"in {elapsed:.1f} s.",
    )


def _companies_hint(companies: list[dict[str, Any]]) -> ConnectionTestResult:
    names = ", ".join(f"{c.get('name') or c.get('displayName')} ({c.get('id')})" for c in companies[:10])
    return ConnectionTestResult(
        False, f"Authenticated, but no company is chosen: set the Business Central company id. Companies: {names}."
    )


def _plain(error: ConnectorError, connection: Connection, step: str) -> str:
    """One sentence an administrator can act on, with the remote details after it."""
    details = " | ".join(p for p in (f"HTTP {error.status}" if error.status else "", error.remote_code) if p)
    suffix = f" ({details})" if details else ""
    if step == "authenticate":
        if error.kind in (ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION):
            return f"{error.message}{suffix}"
        return f"Could not reach the token endpoint {connection.effective_token_url}: {error.message}{suffix}"
    if error.kind == ErrorKind.AUTHENTICATION:
        service = ConnectionKind(connection.kind).label
        return (
            f"Bad credentials for {service}: the token was issued but the service refused it. Check that the "
            f"application is registered in {service} and that the scope is right. {error.message}{suffix}"
        )
    if error.kind == ErrorKind.PERMISSION:
        return f"Missing permission: the application may not {step}. {error.message}{suffix}"
    if error.kind == ErrorKind.NOT_FOUND and connection.kind == ConnectionKind.BUSINESS_CENTRAL:
        return (
            f"Unknown company or environment: Business Central has no company {connection.bc_company_id} in "
            f"environment {connection.bc_environment!r}. {error.message}{suffix}"
        )
    if error.kind == ErrorKind.NOT_FOUND:
        return f"Not found: check the environment URL {connection.environment_url}. {error.message}{suffix}"
    if error.kind == ErrorKind.THROTTLED:
        return f"The service is throttling requests; try again in a minute. {error.message}{suffix}"
    return f"Could not {step}: {error.message}{suffix}"


@transaction.atomic
def connection_save_secret(*, connection: Connection, client_secret: str = "", reference: str | None = None) -> None:
    """Store a new secret encrypted (blank keeps the current one), or switch to reading it by reference.

    `reference` is `env:NAME` or `file:/path`; an empty string switches back to the stored secret.
    """
    fields = []
    if reference is not None and reference != connection.client_secret_reference:
        if reference:
            validate_secret_reference(reference)
        connection.client_secret_reference = reference
        fields.append("client_secret_reference")
    if client_secret:
        connection.set_client_secret(client_secret)
        fields.append("client_secret_encrypted")
    if fields and connection.pk:
        connection.save(update_fields=[*fields, "updated_at"])
    elif fields:
        connection.save()
