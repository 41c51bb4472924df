"""The one small interface both remote clients implement, shaped for the engine's page pipeline.

Rows travel as the APIs send them: Business Central API v2.0 property names (`displayName`,
`lastModifiedDateTime`, `@odata.etag`), Dataverse logical names with lookups as `_x_value`
(`name`, `modifiedon`, `_transactioncurrencyid_value`, `@odata.etag`). Only `connectors` talks HTTP.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID


class ErrorKind(enum.StrEnum):
    """What the engine and the admin can do about a failure."""

    TRANSIENT = "transient"  # 5xx, timeouts, dropped connections: retry later
    THROTTLED = "throttled"  # 429 after the retry budget ran out
    AUTHENTICATION = "authentication"  # bad credentials, expired or rejected token
    PERMISSION = "permission"  # 403: the integration user lacks a privilege
    VALIDATION = "validation"  # the record's data was refused (see `field`)
    NOT_FOUND = "not_found"  # the record or the company does not exist
    CONFLICT = "conflict"  # stale ETag: changed by someone else since we read it
    MISSING_DEPENDENCY = "missing_dependency"  # a referenced record (currency, owner) does not exist
    MALFORMED_ANSWER = "malformed_answer"  # not the shape the API documents (HTML, no `value`), or a foreign link

    @property
    def is_retryable(self) -> bool:
        return self in (ErrorKind.TRANSIENT, ErrorKind.THROTTLED)


class ConnectorError(Exception):
    """A classified failure of a remote call. Never carries a secret or a bearer token."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        remote_code: str = "",
        correlation_id: str = "",
        field: str = "",
        response_excerpt: str = "",
        outcome_unknown: bool = False,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.remote_code = remote_code
        self.correlation_id = correlation_id
        self.field = field
        self.response_excerpt = response_excerpt[:2000]
        # True when a write may or may not have been applied (the connection dropped after sending it).
        self.outcome_unknown = outcome_unknown

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep every attribute when the error is pickled (RQ job results, multiprocessing).
        return (_rebuild_connector_error, (self.__class__, self.kind, self.message, dict(self.__dict__)))

    def detail(self) -> str:
        parts = [f"HTTP {self.status}" if self.status else "", self.remote_code, self.correlation_id]
        head = " | ".join(p for p in parts if p)
        return f"{head}\n{self.response_excerpt}".strip()


def _rebuild_connector_error(
    cls: type[ConnectorError], kind: ErrorKind, message: str, state: dict[str, Any]
) -> ConnectorError:
    error = cls(kind, message)
    error.__dict__.update(state)
    return error


@dataclass(frozen=True)
class Page:
    """One server-driven page of rows."""

    rows: list[dict[str, Any]]
    next_link: str | None = None
    delta_link: str | None = None  # Dataverse change tracking: present on the last page only
    deleted_ids: list[UUID] = field(default_factory=list)  # Dataverse change tracking: `$deletedEntity` rows


OperationKind = Literal["create", "update", "upsert", "delete"]


@dataclass
class WriteOperation:
    """One record to write. `ref` is the caller's key for matching the result to its record."""

    kind: OperationKind
    entity_set: str
    ref: str
    values: dict[str, Any] = field(default_factory=dict)
    record_id: UUID | None = None  # update/delete/upsert: the target; Dataverse create: a client-chosen id
    etag: str | None = None  # If-Match for update/delete; None means "*" (must exist, any version)
    # Columns wanted in the result's row besides those written, where the client reads the row back after a bulk
    # message (Dataverse): the caller's name field, say. Lookups are not read back.
    returned: tuple[str, ...] = ()


@dataclass
class WriteResult:
    ref: str
    ok: bool
    record_id: UUID | None = None
    etag: str | None = None
    modified_on: datetime | None = None
    row: dict[str, Any] | None = None  # the record as stored after the write, where the API returns it
    error: ConnectorError | None = None


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # string, memo, integer, decimal, money, boolean, datetime, guid, choice, lookup, enum
    max_length: int | None = None
    options: dict[Any, str] = field(default_factory=dict)  # choice value -> label (BC enums: value -> value)
    read_only: bool = False
    required: bool = False
    lookup_targets: tuple[str, ...] = ()  # Dataverse lookups: target entity sets


@dataclass(frozen=True)
class EntityNames:
    """How Dataverse names one entity set's table, key and primary name column."""

    logical_name: str
    primary_key: str
    primary_name: str


@dataclass(frozen=True)
class TableInfo:
    entity_set: str
    primary_key: str  # "id" on Business Central, e.g. "accountid" on Dataverse
    primary_name: str  # e.g. "displayName", "name"
    modified_on: str  # "lastModifiedDateTime" / "modifiedon"
    columns: dict[str, ColumnInfo]


class RemoteClient(Protocol):
    """What the engine, coupling and mapping validation need from Business Central and Dataverse alike."""

    request_counts: Counter[str]  # requests made through this client, by kind ("read", "write", "batch", "token", ...)
    throttle_wait_seconds: float  # slept because the service throttled the client, all its threads together

    def parallelism(self) -> int:
        """How many requests the client lets be in flight now (its throttle's concurrency, capped by the service)."""

    def hear_parallelism(self) -> None:
        """Before parallel writes: learn the service's recommended parallelism with one cheap request, where the
        service tells it on its answers and none came yet (else nothing)."""

    def write_batch_size(self) -> int:
        """How many writes one bulk request carries now (the connection's batch size, smaller after throttling)."""

    def read_pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        modified_since: datetime | None = None,
        select: list[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """Yield pages of rows matching `filter` and modified after `modified_since`, following nextLinks."""

    def read_by_ids(
        self, entity_set: str, ids: list[UUID], *, select: list[str] | None = None, filter: str | None = None
    ) -> dict[UUID, dict[str, Any]]:
        """Return the rows that exist among `ids` and match `filter`, keyed by id (missing ids are simply absent)."""

    def count(self, entity_set: str, *, filter: str | None = None) -> int:
        """Return how many rows match `filter`."""

    def changed_after(self, entity_set: str, moment: datetime | None, *, filter: str | None = None) -> bool:
        """Whether a row matching `filter` was modified after `moment`: one request with `$top=1`."""

    def write_many(self, operations: list[WriteOperation]) -> list[WriteResult]:
        """Write in bulk; return one result per operation, in order. Retries transient faults itself."""

    def table_info(self, entity_set: str) -> TableInfo:
        """Columns, types, max lengths and option values of one table, from the service's metadata."""

    def server_time_at(self, moment: datetime) -> datetime:
        """The earliest time the service's clock can have shown when this machine's showed `moment`."""

    def tables(self) -> list[str]:
        """Entity sets the service offers."""

    def close(self) -> None: ...
