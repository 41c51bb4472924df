"""Table metadata (columns, types, lengths, options) of both systems, read through the connectors, cached per run.

One `MetadataCache` lives for one validation run or one admin request: it opens at most one client per system
and reads each table once. When a system cannot be reached it says why (no connection, bad credentials, unknown
table), and the caller shows that reason instead of treating the names as checked.
"""

from __future__ import annotations

import contextlib
import difflib

from django.conf import settings

from connectors.bc_routes import STANDARD_ROUTE, split_route
from connectors.business_central import BusinessCentralClient
from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from connectors.types import ColumnInfo, ConnectorError, ErrorKind, RemoteClient, TableInfo
from mappings.choices import SIDE_KIND, SIDE_LABEL, Side
from mappings.companies import company_of
from mappings.models import TableMapping


class MetadataUnavailable(Exception):
    """The metadata of a system or table could not be read; the message says why, in plain words."""

    def __init__(self, message: str, *, unknown_table: bool = False, reason: str = ""):
        super().__init__(message)
        self.message = message
        self.unknown_table = unknown_table
        self.reason = reason or message  # without the "names were not checked" framing, for other pages


class MetadataCache:
    """Per-run cache of clients and table metadata for both systems.

    With a `mapping`, Business Central is read through the mapping's own company (what its runs read): counting
    records must not count another company's.
    """

    def __init__(self, mapping: TableMapping | None = None) -> None:
        self._mapping = mapping
        self._clients: dict[str, RemoteClient] = {}
        self._client_errors: dict[str, MetadataUnavailable] = {}
        self._tables: dict[tuple[str, str], TableInfo | MetadataUnavailable] = {}  # (side, entity set) -> result
        self._table_lists: dict[str, list[str] | MetadataUnavailable] = {}  # side -> its entity sets

    def client(self, side: Side) -> RemoteClient:
        if side in self._client_errors:
            raise self._client_errors[side]
        if side not in self._clients:
            try:
                self._clients[side] = _open_client(side, self._mapping)
            except MetadataUnavailable as exc:
                self._client_errors[side] = exc
                raise
        return self._clients[side]

    def table(self, side: Side, entity_set: str) -> TableInfo:
        """Return the table's metadata, or raise MetadataUnavailable saying why it cannot be had."""
        key = (side, entity_set)
        if key not in self._tables:
            self._tables[key] = self._read_table(side, entity_set)
        result = self._tables[key]
        if isinstance(result, MetadataUnavailable):
            raise result
        return result

    def tables(self, side: Side) -> list[str]:
        """Entity sets the system offers (for suggestions); raises MetadataUnavailable."""
        if side not in self._table_lists:
            try:
                client = self.client(side)
                names = list(client.tables())
                if isinstance(client, BusinessCentralClient):
                    for route in bc_api_routes():
                        names += client.tables(route)
                self._table_lists[side] = sorted(names)
            except MetadataUnavailable as exc:
                self._table_lists[side] = exc
            except ConnectorError as exc:
                self._table_lists[side] = MetadataUnavailable(
                    f"{SIDE_LABEL[side]} tables could not be listed: {exc.message}"
                )
        result = self._table_lists[side]
        if isinstance(result, MetadataUnavailable):
            raise result
        return result

    def count(self, side: Side, entity_set: str, filter: str | None) -> int:
        try:
            return self.client(side).count(entity_set, filter=filter or None)
        except ConnectorError as exc:
            raise MetadataUnavailable(f"{SIDE_LABEL[side]} could not count {entity_set}: {exc.message}") from None

    def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):  # closing is best effort; the run's result is already known
                client.close()
        self._clients.clear()

    def _read_table(self, side: Side, entity_set: str) -> TableInfo | MetadataUnavailable:
        label = SIDE_LABEL[side]
        try:
            client = self.client(side)
        except MetadataUnavailable as exc:
            return exc
        try:
            return client.table_info(entity_set)
        except ConnectorError as exc:
            if exc.kind == ErrorKind.VALIDATION:  # not a well-formed name (bc_routes.split_route says why)
                return MetadataUnavailable(f"{label}: {exc.message}", unknown_table=True)
            if exc.kind == ErrorKind.NOT_FOUND:
                return MetadataUnavailable(
                    f"{label} has no table {entity_set!r}.{_close_tables(client, entity_set)}", unknown_table=True
                )
            return MetadataUnavailable(f"{label} metadata for {entity_set} could not be read: {exc.message}")
        except KeyError:
            return MetadataUnavailable(
                f"{label} has no table {entity_set!r}.{_close_tables(client, entity_set)}", unknown_table=True
            )


def bc_api_routes() -> list[str]:
    """Custom API routes to offer: the configured ones and those the mappings already use, in that order."""
    routes = list(settings.SYNC_BC_API_ROUTES)
    for entity_set in TableMapping.objects.filter(bc_entity_set__contains="/").values_list("bc_entity_set", flat=True):
        try:
            routes.append(split_route(entity_set)[0])
        except ConnectorError:
            continue  # validation reports the malformed name on its own mapping
    return [route for route in dict.fromkeys(routes) if route != STANDARD_ROUTE]


def _open_client(side: Side, mapping: TableMapping | None = None) -> RemoteClient:
    label = SIDE_LABEL[side]
    try:
        connection = _metadata_connection(side, mapping)
    except (Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
        raise MetadataUnavailable(f"{label} names were not checked: {exc}", reason=str(exc)) from None
    try:
        return open_client(connection)
    except ConnectorError as exc:
        reason = f"{label} cannot be reached: {exc.message}"
        raise MetadataUnavailable(f"{label} names were not checked: {exc.message}", reason=reason) from None


def _metadata_connection(side: Side, mapping: TableMapping | None = None) -> Connection:
    """The connection to read a side's metadata with: a mapping's own company when there is a mapping (its records
    are that company's). Otherwise several Business Central connections (one per company of an environment) share
    the environment's API and its metadata: any enabled one answers."""
    if SIDE_KIND[side] == ConnectionKind.BUSINESS_CENTRAL:
        if mapping is not None:
            return company_of(mapping)
        first = Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL, enabled=True).order_by("pk").first()
        if first is not None:
            return first
    return Connection.objects.active(SIDE_KIND[side])


def _close_tables(client: RemoteClient, entity_set: str) -> str:
    try:
        tables = client.tables()
    except ConnectorError:
        return ""
    return did_you_mean(entity_set, tables)


def column_hint(column: ColumnInfo, options_shown: int = 8) -> str:
    """What the field lists show next to a name: type, length, required, read-only, lookup target, option values."""
    parts = [column.type + (f"({column.max_length})" if column.max_length else "")]
    if column.required:
        parts.append("required")
    if column.read_only:
        parts.append("read-only")
    if column.lookup_targets:
        parts.append("lookup to " + ", ".join(column.lookup_targets))
    if column.options:
        items = list(column.options.items())
        shown = ", ".join(str(v) if str(v) == str(label) else f"{v} {label}" for v, label in items[:options_shown])
        parts.append("options: " + shown + (", ..." if len(items) > options_shown else ""))
    return "; ".join(parts)


def did_you_mean(name: str, candidates) -> str:
    """Return ' Did you mean "x"?' for the closest candidates (difflib), or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    if not close:
        return ""
    return " Did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
