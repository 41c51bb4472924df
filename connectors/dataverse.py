"""Dataverse Web API client: bulk messages with client-chosen ids, multipart `$batch`, metadata, change tracking."""

from __future__ import annotations

import logging
import re
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from http.cookiejar import Cookie, DefaultCookiePolicy
from typing import Any
from uuid import UUID

import httpx

from connectors import resilience
from connectors.errors import error_from_parts, infer_field
from connectors.metadata import dataverse_column
from connectors.models import Connection
from connectors.multipart import BatchPart, decode_batch, encode_batch
from connectors.odata import as_uuid, chunked, parse_datetime, string_literal
from connectors.resilience import RetryPolicy
from connectors.types import ConnectorError, EntityNames, ErrorKind, Page, TableInfo, WriteOperation, WriteResult
from connectors.webhooks import DataverseWebhooks

logger = logging.getLogger("connectors")

AFFINITY_COOKIE = "ARRAffinity"  # and ARRAffinitySameSite
BULK_LIMIT = 1000  # CreateMultiple / UpsertMultiple / $batch parts
MAX_WRITE_ROUNDS = 4
PART_RETRY_STATUSES = {429, 503}
DUPLICATE_ID_CODES = {"0x80040237", "0x80060892"}
# A whole request failing like this fails the rest of the call at once, instead of waiting again for each chunk.
STOP_KINDS = (ErrorKind.THROTTLED, ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION)


# The standard tables we sync; anything else is looked up once in EntityDefinitions.
KNOWN_TABLES = {
    "accounts": EntityNames("account", "accountid", "name"),
    "contacts": EntityNames("contact", "contactid", "fullname"),
    "systemusers": EntityNames("systemuser", "systemuserid", "fullname"),
    "transactioncurrencies": EntityNames("transactioncurrency", "transactioncurrencyid", "currencyname"),
}


class ChangeTrackingExpired(ConnectorError):
    """The delta token is no longer valid (older than the organisation keeps changes): do a full read again."""


@dataclass
class _Item:
    index: int
    operation: WriteOperation
    record_id: UUID | None  # the target, or the id we chose for a create


class DataverseClient(DataverseWebhooks):
    id_field = "id"  # per table: see primary_key()
    modified_field = "modifiedon"
    modified_with_milliseconds = False
    max_page_size = 5000
    max_batch_size = BULK_LIMIT
    # learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
    # #maximum-url-length: 32,768 characters, and 65,536 for a request inside a `$batch`. A bulk write's read-back
    # of 1,000 ids is one GET inside a `$batch` (53 KB of URL) rather than ten of 100: a tenth of the inner requests.
    max_url_length = 32_768
    max_batched_url_length = 65_536
    default_headers = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}

    def __init__(self, connection: Connection, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__(connection, retry_policy=retry_policy)
        self._names: dict[str, EntityNames] = dict(KNOWN_TABLES)
        if connection.max_concurrency > 1:
            # Parallel requests spread over the web servers, each with its own service-protection counters, only
            # without the server-affinity cookie (Microsoft: send-parallel-requests).
            self.http.cookies.jar.set_policy(_NoServerAffinity())

    # -- names ------------------------------------------------------------------------------------------------------

    def parallelism(self) -> int:
        # Dataverse tells its recommended parallelism (x-ms-dop-hint) on every answer: one at a time until one came
        # (the writer asks hear_parallelism first, so that is a WhoAmI, not a bulk write).
        return self.throttle.concurrency if self.answered else 1

    def hear_parallelism(self) -> None:
        # Until an answer came, parallelism() is 1, so a run's first bulk write went alone: an UpsertMultiple of
        # 1,000 records takes seconds of service time, while WhoAmI takes milliseconds and carries the same hint.
        # If it fails, the first write hears the hint instead.
        if self.answered or self.connection.max_concurrency <= 1:
            return
        with suppress(ConnectorError):
            self.request("GET", "WhoAmI", kind="metadata")

    def collection_url(self, entity_set: str) -> str:
        return self.url(entity_set)

    def names(self, entity_set: str) -> EntityNames:
        if entity_set not in self._names:
            body = self.request(
                "GET",
                "EntityDefinitions",
                kind="metadata",
                params={
                    "$filter": f"EntitySetName eq {string_literal(entity_set)}",
                    "$select": "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute",
                },
            )
            rows = self.collection_answer(body)["value"]
            if not rows:
                raise ConnectorError(ErrorKind.NOT_FOUND, f"Dataverse has no table with the entity set {entity_set!r}.")
            row = rows[0]
            self._names[entity_set] = EntityNames(
                row["LogicalName"], row["PrimaryIdAttribute"], row.get("PrimaryNameAttribute") or ""
            )
        return self._names[entity_set]

    def primary_key(self, entity_set: str) -> str:
        return self.names(entity_set).primary_key

    def count_is_exact(self, reported: int, body: dict[str, Any]) -> bool:
        # Dataverse caps @odata.count at 5,000; beyond that we count the ids page by page.
        return reported < 5000 and not body.get("@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded")

    # -- writes -----------------------------------------------------------------------------------------------------

    def write_many(self, operations: list[WriteOperation]) -> list[WriteResult]:
        """Creates: CreateMultiple with ids we choose; upserts: UpsertMultiple; updates and deletes: `$batch`.

        CreateMultiple and UpsertMultiple are all-or-nothing: when one fails we send its records again through
        `$batch` with `odata.continue-on-error`, so only the failing records fail, each with its own error.
        """
        results: dict[int, WriteResult] = {}
        creates: dict[str, list[_Item]] = {}
        upserts: dict[str, list[_Item]] = {}
        others: list[_Item] = []
        for index, operation in enumerate(operations):
            if operation.kind == "create" or (operation.kind == "upsert" and operation.record_id is None):
                item = _Item(index, operation, operation.record_id or uuid.uuid4())
                creates.setdefault(operation.entity_set, []).append(item)
            elif operation.record_id is None:
                error = ConnectorError(ErrorKind.VALIDATION, f"A {operation.kind} needs the record id.")
                results[index] = WriteResult(operation.ref, ok=False, error=error)
            elif operation.kind == "upsert":
                upserts.setdefault(operation.entity_set, []).append(_Item(index, operation, operation.record_id))
            else:
                others.append(_Item(index, operation, operation.record_id))
        stop: list[ConnectorError] = []  # set when the service throttles past the budget or refuses us
        for entity_set, items in creates.items():
            others.extend(self._bulk(entity_set, items, "CreateMultiple", results, stop))
        for entity_set, items in upserts.items():
            others.extend(self._bulk(entity_set, items, "UpsertMultiple", results, stop))
        if others:
            self._batch_rounds(others, results, stop)
        return [results[i] for i in range(len(operations))]

    def _bulk(
        self,
        entity_set: str,
        items: list[_Item],
        action: str,
        results: dict[int, WriteResult],
        stop: list[ConnectorError],
    ) -> list[_Item]:
        """Send bulk messages; store results; return the items to send again one by one through `$batch`."""
        names = self.names(entity_set)
        fallback: list[_Item] = []
        for chunk in chunked(items, self.throttle.batch_size):
            if stop:
                self._fail(chunk, results, stop[0])
                continue
            targets = []
            for item in chunk:
                target = {"@odata.type": f"Microsoft.Dynamics.CRM.{names.logical_name}", **item.operation.values}
                target[names.primary_key] = str(item.record_id)
                if action == "UpsertMultiple":
                    target["@odata.id"] = f"{entity_set}({item.record_id})"
                targets.append(target)
            try:
                self.request(
                    "POST",
                    f"{entity_set}/Microsoft.Dynamics.CRM.{action}",
                    kind="write",
                    json={"Targets": targets},
                    # Creating with our own ids cannot duplicate a record, and upserting twice is harmless.
                    idempotent=True,
                )
            except ConnectorError as error:
                if error.kind in STOP_KINDS:
                    stop.append(error)
                    for item in chunk:
                        results[item.index] = WriteResult(item.operation.ref, ok=False, error=error)
                    continue
                # All-or-nothing failed (or its outcome is unknown): find out record by record.
                logger.info("%s of %d %s failed (%s); retrying them one by one", action, len(chunk), entity_set, error)
                fallback.extend(chunk)
                continue
            unread = self._read_back(entity_set, chunk, results)
            if unread is not None and unread.kind in STOP_KINDS:
                stop.append(unread)
        return fallback

    def _read_back(self, entity_set: str, items: list[_Item], results: dict[int, WriteResult]) -> ConnectorError | None:
        """Bulk messages answer without ETags: read the written rows once to return ETag, modified-on and row.

        The row holds the columns written (as the service stored them), the key, the primary name and the columns
        each operation asks for (`returned`): what the caller remembers. Not every column: Microsoft asks for
        `$select` (best-practices/work-with-data), and a whole account is some 50 columns to produce, send and
        parse, for each of 1,000 rows per bulk message. Returns why the read-back failed, if it did."""
        names = self.names(entity_set)
        wanted = {key for item in items for key in (*item.operation.values, *item.operation.returned)}
        # Not lookups (`x@odata.bind` reads back as `_x_value`), and no empty name: a table may have no primary name.
        select = sorted(
            n for n in {names.primary_key, names.primary_name, self.modified_field, *wanted} if n and "@" not in n
        )
        try:
            rows = self.read_by_ids(entity_set, [item.record_id for item in items if item.record_id], select=select)
        except ConnectorError as unread:
            # Written, but how it was stored is unknown: each record fails on its own, classified by the cause (a
            # throttle is transient, a column the table lacks is not), and the next run writes it again: an upsert
            # by our id cannot duplicate it.
            failure = ConnectorError(
                unread.kind,
                f"The record was written but could not be read back: {unread.message}",
                status=unread.status,
                remote_code=unread.remote_code,
                correlation_id=unread.correlation_id,
            )
            for item in items:
                results[item.index] = WriteResult(item.operation.ref, ok=False, record_id=item.record_id, error=failure)
            return unread
        for item in items:
            row = rows.get(item.record_id) if item.record_id else None
            if row is None:
                error = ConnectorError(ErrorKind.TRANSIENT, "The record was written but could not be read back.")
                results[item.index] = WriteResult(item.operation.ref, ok=False, record_id=item.record_id, error=error)
            else:
                results[item.index] = self._row_result(item, row)
        return None

    def _row_result(self, item: _Item, row: dict[str, Any]) -> WriteResult:
        key = self.primary_key(item.operation.entity_set)
        return WriteResult(
            item.operation.ref,
            ok=True,
            record_id=as_uuid(row.get(key)) or item.record_id,
            etag=row.get("@odata.etag"),
            modified_on=parse_datetime(row.get("modifiedon")),
            row=row,
        )

    def _batch_rounds(self, items: list[_Item], results: dict[int, WriteResult], stop: list[ConnectorError]) -> None:
        pending = items
        for round_number in range(1, MAX_WRITE_ROUNDS + 1):
            resend: list[_Item] = []
            for chunk in chunked(pending, self.throttle.batch_size):
                if stop:
                    self._fail(chunk, results, stop[0])
                    continue
                resend.extend(self._batch(chunk, results, last_round=round_number == MAX_WRITE_ROUNDS, stop=stop))
            pending = resend
            if not pending:
                return
            delay = self.retry_policy.backoff(round_number)
            resilience.sleep(delay)
            self.note_throttle_wait(delay)
        for item in pending:
            error = ConnectorError(ErrorKind.THROTTLED, "The service kept throttling this write; try again later.")
            results[item.index] = WriteResult(item.operation.ref, ok=False, record_id=item.record_id, error=error)

    def _batch_part(self, item: _Item) -> BatchPart:
        operation = item.operation
        names = self.names(operation.entity_set)
        entity_url = self.url(f"{operation.entity_set}({item.record_id})")
        representation = {"Prefer": "return=representation"}
        if operation.kind == "create" or operation.record_id is None:  # an upsert without id is a create
            body = {**operation.values, names.primary_key: str(item.record_id)}
            return BatchPart("POST", self.url(operation.entity_set), representation, body)
        if operation.kind == "upsert":
            return BatchPart("PATCH", entity_url, representation, dict(operation.values))  # plain PATCH = upsert
        if_match = {"If-Match": operation.etag or "*"}
        if operation.kind == "delete":
            return BatchPart("DELETE", entity_url, if_match)
        return BatchPart("PATCH", entity_url, {**if_match, **representation}, dict(operation.values))

    @staticmethod
    def _fail(items: list[_Item], results: dict[int, WriteResult], error: ConnectorError) -> None:
        for item in items:
            results[item.index] = WriteResult(item.operation.ref, ok=False, record_id=item.record_id, error=error)

    def _batch(
        self, chunk: list[_Item], results: dict[int, WriteResult], *, last_round: bool, stop: list[ConnectorError]
    ) -> list[_Item]:
        content_type, body = encode_batch([self._batch_part(item) for item in chunk])
        try:
            response = self.request(
                "POST",
                "$batch",
                kind="batch",
                content=body,
                headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
                idempotent=False,
            )
            parts = decode_batch(response.headers.get("Content-Type", ""), response.content)
        except ConnectorError as failure:
            if failure.outcome_unknown and not last_round:
                try:
                    return self._recover_unknown(chunk, results)
                except ConnectorError:
                    pass  # cannot even look: report the writes as undecided (the error keeps outcome_unknown)
            if failure.kind in STOP_KINDS:
                stop.append(failure)
            self._fail(chunk, results, failure)
            return []
        except ValueError as exc:
            error = ConnectorError(ErrorKind.TRANSIENT, f"The batch response could not be read: {exc}")
            for item in chunk:
                results[item.index] = WriteResult(item.operation.ref, ok=False, record_id=item.record_id, error=error)
            return []
        resend: list[_Item] = []
        read_back: list[_Item] = []
        for position, item in enumerate(chunk):
            part = parts[position] if position < len(parts) else None
            if part is None:
                error = ConnectorError(ErrorKind.TRANSIENT, "The batch response has no answer for this request.")
                results[item.index] = WriteResult(item.operation.ref, ok=False, record_id=item.record_id, error=error)
            elif part.status in PART_RETRY_STATUSES and not last_round:
                if part.status == 429:
                    self.throttle.on_throttled()
                resend.append(item)
            elif 200 <= part.status < 300:
                if item.operation.kind == "delete":
                    results[item.index] = WriteResult(item.operation.ref, ok=True, record_id=item.record_id)
                elif isinstance(part.body, dict) and part.body:
                    results[item.index] = self._row_result(item, part.body)
                else:
                    read_back.append(item)  # 204: the service ignored return=representation
            else:
                error = self._write_error(item, part.status, part.body, part.headers)
                if item.operation.kind != "delete" and error.remote_code in DUPLICATE_ID_CODES:
                    read_back.append(item)  # a create we already made (a retry after a dropped connection)
                else:
                    results[item.index] = WriteResult(
                        item.operation.ref, ok=False, record_id=item.record_id, error=error
                    )
        by_set: dict[str, list[_Item]] = {}
        for item in read_back:
            by_set.setdefault(item.operation.entity_set, []).append(item)
        for entity_set, items in by_set.items():
            self._read_back(entity_set, items, results)
        return resend

    def _write_error(self, item: _Item, status: int, body: Any, headers: dict[str, Any]) -> ConnectorError:
        error = self._scrubbed(error_from_parts(status, body, headers))
        infer_field(error, item.operation.values)
        if error.kind == ErrorKind.NOT_FOUND:
            mentions_target = item.record_id is not None and str(item.record_id).lower() in error.message.lower()
            if item.operation.kind in ("create", "upsert") or (error.message and not mentions_target):
                # Not the record itself: a lookup (`nav@odata.bind`) points at a row that does not exist.
                error.kind = ErrorKind.MISSING_DEPENDENCY
        return error

    def _recover_unknown(self, chunk: list[_Item], results: dict[int, WriteResult]) -> list[_Item]:
        """The batch may or may not have been applied: compare the rows with what we meant to write."""
        logger.warning("A Dataverse batch of %d writes had an unknown outcome; checking the rows", len(chunk))
        by_set: dict[str, list[UUID]] = {}
        for item in chunk:
            if item.record_id:
                by_set.setdefault(item.operation.entity_set, []).append(item.record_id)
        current = {entity_set: self.read_by_ids(entity_set, ids) for entity_set, ids in by_set.items()}
        resend = []
        for item in chunk:
            row = current.get(item.operation.entity_set, {}).get(item.record_id) if item.record_id else None
            kind = item.operation.kind
            if kind == "delete":
                if row is None:
                    results[item.index] = WriteResult(item.operation.ref, ok=True, record_id=item.record_id)
                else:
                    resend.append(item)
            elif row is None:
                if kind == "update":
                    error = ConnectorError(ErrorKind.NOT_FOUND, "The record no longer exists.", status=404)
                    results[item.index] = WriteResult(
                        item.operation.ref, ok=False, record_id=item.record_id, error=error
                    )
                else:
                    resend.append(item)  # not created yet: creating with our id again is safe
            elif kind in ("create", "upsert") or _values_applied(item.operation.values, row):
                results[item.index] = self._row_result(item, row)
            elif item.operation.etag is None or row.get("@odata.etag") == item.operation.etag:
                resend.append(item)
            else:
                error = ConnectorError(
                    ErrorKind.CONFLICT,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                    status=412,
                )
                results[item.index] = WriteResult(item.operation.ref, ok=False, record_id=item.record_id, error=error)
        return resend

    max_read_batch = BULK_LIMIT

    def batch_get(self, entity_set: str, queries: list[dict[str, str]]) -> list[dict[str, Any] | None]:
        url = self.collection_url(entity_set)
        prefer = {"Prefer": f"odata.maxpagesize={self.max_page_size}"}
        parts = [BatchPart("GET", f"{url}?{httpx.QueryParams(query)}", prefer) for query in queries]
        content_type, body = encode_batch(parts)
        response = self.request(
            "POST",
            "$batch",
            kind="read",
            content=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            idempotent=True,
        )
        answers: list[dict[str, Any] | None] = []
        decoded = decode_batch(response.headers.get("Content-Type", ""), response.content)
        for i in range(len(queries)):
            part = decoded[i] if i < len(decoded) else None
            if part is not None and 200 <= part.status < 300 and isinstance(part.body, dict):
                answers.append(part.body)
            elif part is None or part.status in (*PART_RETRY_STATUSES, 502, 504):
                answers.append(None)
            else:
                raise self._scrubbed(error_from_parts(part.status, part.body, part.headers))
        return answers

    # -- change tracking --------------------------------------------------------------------------------------------

    def read_changes(
        self,
        entity_set: str,
        *,
        select: list[str] | None = None,
        delta_link: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Page]:
        """Without `delta_link`: every row, and a delta link on the last page. With it: changed rows and deleted ids.

        Raises ChangeTrackingExpired when the service no longer knows the delta token (do a full read again).
        """
        size = max(1, min(page_size or self.connection.page_size or self.max_page_size, self.max_page_size))
        if delta_link:
            url: str | None = delta_link
            params: dict[str, str] | None = None
        else:
            url = self.collection_url(entity_set)
            params = {}
            if select:
                names = self.names(entity_set)
                params["$select"] = ",".join(dict.fromkeys([*select, names.primary_key, self.modified_field]))
        headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={size}"}
        followed: set[str] = set()
        while url:
            try:
                body = self.collection_answer(self.request("GET", url, kind="read", params=params, headers=headers))
            except ConnectorError as error:
                if delta_link and error.status in (400, 404, 410) and _looks_expired(error):
                    raise ChangeTrackingExpired(
                        ErrorKind.VALIDATION,
                        "The change-tracking token has expired: read the whole table again.",
                        status=error.status,
                        remote_code=error.remote_code,
                        correlation_id=error.correlation_id,
                        response_excerpt=error.response_excerpt,
                    ) from None
                raise
            rows, deleted = [], []
            for row in body["value"]:
                # Dataverse documents `$deletedEntity` entries; OData 4.01's `@removed` form (the id in `@id`, e.g.
                # "accounts(<guid>)") is read too, so either shape of a deleted row is never taken for a change.
                if (
                    "$deletedEntity" in str(row.get("@odata.context", ""))
                    or row.get("reason") == "deleted"
                    or "@removed" in row
                ):
                    record_id = as_uuid(row.get("id")) or _id_in(str(row.get("@id") or ""))
                    if record_id:
                        deleted.append(record_id)
                else:
                    rows.append(row)
            next_link = self.next_link(body, followed)
            yield Page(rows=rows, next_link=next_link, delta_link=body.get("@odata.deltaLink"), deleted_ids=deleted)
            url, params = next_link, None

    # -- metadata ---------------------------------------------------------------------------------------------------

    def insert_option_value(self, entity_set: str, attribute: str, label: str) -> int:
        """Append an option to a choice column (the InsertOptionValue action); return its new value.

        The table's metadata is read again afterwards, so the new option is known to later checks.
        """
        body = {
            "EntityLogicalName": self.names(entity_set).logical_name,
            "AttributeLogicalName": attribute,
            "Label": {"LocalizedLabels": [{"Label": label, "LanguageCode": 1033}]},
        }
        answer = self.request("POST", "InsertOptionValue", kind="metadata", json=body).json()
        value = answer.get("NewOptionValue") if isinstance(answer, dict) else None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConnectorError(ErrorKind.MALFORMED_ANSWER, "InsertOptionValue answered without a NewOptionValue.")
        self._table_info.pop(entity_set, None)
        return value

    def tables(self) -> list[str]:
        body = self.collection_answer(self.request("GET", "", kind="metadata"))
        return sorted(e["name"] for e in body["value"] if e.get("kind", "EntitySet") == "EntitySet")

    def load_table_info(self, entity_set: str) -> TableInfo:
        """Columns from EntityDefinitions: base attributes, then the typed casts that carry lengths and options."""
        names = self.names(entity_set)
        definition = f"EntityDefinitions(LogicalName={string_literal(names.logical_name)})"
        base = self._metadata_values(
            f"{definition}/Attributes",
            {
                "$select": "LogicalName,AttributeType,AttributeOf,IsValidForCreate,IsValidForUpdate,"
                "IsValidForRead,RequiredLevel"
            },
        )
        # Attributes of another attribute (parentcustomeridtype, owneridname) are kept: they are readable and
        # filterable, and IsValidForCreate/Update marks them read-only.
        attributes = {a["LogicalName"]: a for a in base if a.get("LogicalName")}
        casts = (
            ("StringAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
            ("MemoAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
            ("PicklistAttributeMetadata", {"$select": "LogicalName", "$expand": "OptionSet($select=Options)"}),
            ("StateAttributeMetadata", {"$select": "LogicalName", "$expand": "OptionSet($select=Options)"}),
            ("StatusAttributeMetadata", {"$select": "LogicalName", "$expand": "OptionSet($select=Options)"}),
            ("LookupAttributeMetadata", {"$select": "LogicalName,Targets"}),
        )
        for cast, params in casts:
            # When the base answer already carries these details we skip the extra request.
            if self._base_has_details(attributes, cast):
                continue
            for extra in self._metadata_values(f"{definition}/Attributes/Microsoft.Dynamics.CRM.{cast}", params):
                if extra.get("LogicalName") in attributes:
                    attributes[extra["LogicalName"]].update({k: v for k, v in extra.items() if v is not None})
        sets_by_logical = {n.logical_name: es for es, n in self._names.items()}
        columns = {name: dataverse_column(a, sets_by_logical) for name, a in attributes.items()}
        return TableInfo(
            entity_set=entity_set,
            primary_key=names.primary_key,
            primary_name=names.primary_name,
            modified_on="modifiedon",
            columns=columns,
        )

    def _metadata_values(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            values: list[dict[str, Any]] = self.collection_answer(
                self.request("GET", path, kind="metadata", params=params)
            )["value"]
            return values
        except ConnectorError as error:
            if error.kind in (ErrorKind.NOT_FOUND, ErrorKind.VALIDATION):
                logger.info("Dataverse metadata %s is not available: %s", path, error.message)
                return []
            raise

    @staticmethod
    def _base_has_details(attributes: dict[str, dict[str, Any]], cast: str) -> bool:
        wanted = {
            "StringAttributeMetadata": ("String", "MaxLength"),
            "MemoAttributeMetadata": ("Memo", "MaxLength"),
            "PicklistAttributeMetadata": ("Picklist", "OptionSet"),
            "StateAttributeMetadata": ("State", "OptionSet"),
            "StatusAttributeMetadata": ("Status", "OptionSet"),
            "LookupAttributeMetadata": ("Lookup", "Targets"),
        }[cast]
        typed = [a for a in attributes.values() if a.get("AttributeType") == wanted[0]]
        return not typed or all(wanted[1] in a for a in typed)


class _NoServerAffinity(DefaultCookiePolicy):
    def set_ok(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        return not cookie.name.startswith(AFFINITY_COOKIE) and super().set_ok(cookie, request)


def _id_in(entity_id: str) -> UUID | None:
    """The GUID of an OData entity id such as "accounts(2e451703-c686-e711-80e5-00155db19e6d)"."""
    match = re.search(r"\(([0-9a-fA-F-]{36})\)", entity_id)
    return as_uuid(match.group(1)) if match else None


def _looks_expired(error: ConnectorError) -> bool:
    text = f"{error.message} {error.remote_code}".lower()
    return "token" in text or "expire" in text or "delta" in text


def _values_applied(values: dict[str, Any], row: dict[str, Any]) -> bool:
    for name, wanted in values.items():
        if "@" in name:
            continue  # lookups come back as _x_value; a changed ETag with equal plain values is good enough
        if name not in row:
            return False
        have = row[name]
        if isinstance(wanted, int | float) and isinstance(have, int | float):
            if abs(float(wanted) - float(have)) > 1e-9:
                return False
        elif wanted != have:
            return False
    return True
