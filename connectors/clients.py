"""Open the right client for a Connection: the only entry point the engine, coupling and mappings use."""

from __future__ import annotations

from connectors.business_central import BusinessCentralClient
from connectors.choices import ConnectionKind
from connectors.dataverse import DataverseClient
from connectors.models import Connection
from connectors.resilience import RetryPolicy


def open_client(
    connection: Connection, *, retry_policy: RetryPolicy | None = None
) -> BusinessCentralClient | DataverseClient:
    """One client (one pooled httpx.Client) per run; use it as a context manager or call close()."""
    if connection.kind == ConnectionKind.BUSINESS_CENTRAL:
        return BusinessCentralClient(connection, retry_policy=retry_policy)
    if connection.kind == ConnectionKind.DATAVERSE:
        return DataverseClient(connection, retry_policy=retry_policy)
    raise ValueError(f"Unknown connection kind {connection.kind!r}")
