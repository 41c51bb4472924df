"""Business Central API v2.0 client: company-scoped entity sets, JSON `$batch` writes, `$metadata`, webhooks."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any
from uuid import UUID

import httpx

from connectors import answers as answer_shapes
from connectors import resilience
from connectors.bc_routes import STANDARD_ROUTE, split_route
from connectors.errors import error_from_parts, infer_field
from connectors.metadata import parse_bc_metadata
from connectors.models import Connection
from connectors.odata import as_uuid, chunked, parse_datetime, string_literal
from connectors.resilience import RetryPolicy
from connectors.types import ConnectorError, ErrorKind, TableInfo, WriteOperation, WriteResult
from connectors.webhooks import BusinessCentralSubscriptions

logger = logging.getLogger("connectors")

BATCH_LIMIT = 100  # Business Central online refuses larger JSON batches
# Rounds of resending the parts of a batch that were throttled or whose outcome was unknown.
MAX_WRITE_ROUNDS = 4
PER_PART_RETRY_STATUSES = {429, 503}
# A whole batch failing like this fails the rest of the call at once, instead of waiting again for each batch.
STOP_KINDS = (ErrorKind.THROTTLED, ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION)
# Writes of one batch, each with its position in the caller's list.
Chunk = list[tuple[int, WriteOperation]]


class BusinessCentralClient(BusinessCentralSubscriptions):
    id_field = "id"
    modified_field = "lastModifiedDateTime"
    modified_with_milliseconds = True
    max_page_size = 20000
    max_batch_size = BATCH_LIMIT
    # Business Central online serves 5 requests of one user at a time and queues the rest (operational-limits-online).
    per_user_concurrency = 5

    def __init__(self, connection: Connection, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__(connection, retry_policy=retry_policy)
        self.company_id = connection.bc_company_id
        self._metadata_xml: dict[str, str] = {}  # API route -> its CSDL

    # -- URLs -------------------------------------------------------------------------------------------------------
    #
    # An entity set is named as the mapping names it: `customers` for the standard API v2.0, or
    # `{publisher}/{group}/{version}/{entitySet}` for a custom API page an extension publishes under its own route
    # (`.../api/contoso/projects/v1.0/companies(<id>)/projects`), with its own `$metadata` and `$batch`.

    def api_root(self, route: str) -> str:
        """The absolute root of one API route on this connection's environment."""
        if route == STANDARD_ROUTE:
            return self.base_url
        return f"{self.base_url.removesuffix('/' + STANDARD_ROUTE)}/{route}"

    def company_path(self, entity_set: str) -> str:
        """Path relative to the entity set's API root, as `$batch` requests want it."""
        _, name = split_route(entity_set)
        if name == "companies":
            return "companies"
        if not self.company_id:
            raise ConnectorError(ErrorKind.VALIDATION, "The connection has no Business Central company id.")
        return f"companies({self.company_id})/{name}"

    def collection_url(self, entity_set: str) -> str:
        route, _ = split_route(entity_set)
        return self.url(f"{self.api_root(route)}/{self.company_path(entity_set)}")

    def companies(self) -> list[dict[str, Any]]:
        companies: list[dict[str, Any]] = self.collection_answer(self.request("GET", "companies", kind="read"))["value"]
        return companies

    # -- writes -----------------------------------------------------------------------------------------------------

    def write_many(self, operations: list[WriteOperation]) -> list[WriteResult]:
        """JSON `$batch` of at most 100 requests; one result per operation, in order.

        Parts that were throttled are resent in a later round; parts whose outcome is unknown (the batch call
        dropped) are checked against the remote rows first, so nothing is created or changed twice.
        """
        results: dict[int, WriteResult] = {}
        pending = list(enumerate(operations))
        stop: list[ConnectorError] = []
        for round_number in range(1, MAX_WRITE_ROUNDS + 1):
            if not pending:
                break
            retry: list[tuple[int, WriteOperation]] = []
            for chunk in _route_chunks(pending, self.throttle.batch_size):
                if stop:  # throttled past the retry budget, or refused: do not queue up more waits
                    for index, operation in chunk:
                        results[index] = WriteResult(
                            operation.ref, ok=False, record_id=operation.record_id, error=stop[0]
                        )
                    continue
                retry.extend(self._write_chunk(chunk, results, last_round=round_number == MAX_WRITE_ROUNDS, stop=stop))
            pending = retry
            if pending:
                delay = self.retry_policy.backoff(round_number)
                resilience.sleep(delay)
                self.note_throttle_wait(delay)
        for index, operation in pending:
            results[index] = WriteResult(
                operation.ref,
                ok=False,
                error=ConnectorError(ErrorKind.THROTTLED, "The service kept throttling this write; try again later."),
            )
        return [results[i] for i in range(len(operations))]

    def _write_chunk(
        self, chunk: Chunk, results: dict[int, WriteResult], *, last_round: bool, stop: list[ConnectorError]
    ) -> Chunk:
        """Send one batch; store final results; return the (index, operation) pairs to send again."""
        requests = [self._batch_request(str(index), operation) for index, operation in chunk]
        route, _ = split_route(chunk[0][1].entity_set)  # _route_chunks keeps one route per batch
        try:
            response = self.request(
                "POST",
                f"{self.api_root(route)}/$batch",
                kind="batch",
                json={"requests": requests},
                headers={"Content-Type": "application/json"},
            )
        except ConnectorError as failure:
            if failure.outcome_unknown and not last_round:
                try:
                    return self._recover_unknown(chunk, results)
                except ConnectorError:
                    pass  # cannot even look: report the writes as undecided (the error keeps outcome_unknown)
            if failure.kind in STOP_KINDS:
                stop.append(failure)
            for index, operation in chunk:
                results[index] = WriteResult(operation.ref, ok=False, record_id=operation.record_id, error=failure)
            return []
        responses = {str(part.get("id")): part for part in response.json().get("responses", [])}
        resend = []
        for index, operation in chunk:
            part = responses.get(str(index))
            if part is None:
                error = ConnectorError(ErrorKind.TRANSIENT, "The batch response has no answer for this request.")
                results[index] = WriteResult(operation.ref, ok=False, error=error)
                continue
            status = int(part.get("status") or 0)
            if status in PER_PART_RETRY_STATUSES and not last_round:
                if status == 429:
                    self.throttle.on_throttled()
                resend.append((index, operation))
                continue
            if operation.kind == "upsert" and status == 404 and not last_round:
                # No upsert in Business Central: the record is not there, so create it (it gets a new id).
                resend.append((index, replace(operation, kind="create", record_id=None, etag=None)))
                continue
            results[index] = self._result(operation, status, part.get("body"), part.get("headers") or {})
        return resend

    def _batch_request(self, request_id: str, operation: WriteOperation) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if operation.kind == "create" or (operation.kind == "upsert" and operation.record_id is None):
            return {
                "id": request_id,
                "method": "POST",
                "url": self.company_path(operation.entity_set),
                "headers": headers,
                "body": operation.values,
            }
        if operation.record_id is None:
            raise ConnectorError(ErrorKind.VALIDATION, f"A {operation.kind} needs the record id.")
        path = f"{self.company_path(operation.entity_set)}({operation.record_id})"
        # Business Central has no upsert: an "upsert" of a known id is an update that must exist (If-Match *).
        headers["If-Match"] = operation.etag or "*"
        if operation.kind == "delete":
            del headers["Content-Type"]
            return {"id": request_id, "method": "DELETE", "url": path, "headers": headers}
        return {"id": request_id, "method": "PATCH", "url": path, "headers": headers, "body": operation.values}

    def _result(self, operation: WriteOperation, status: int, body: Any, headers: dict[str, Any]) -> WriteResult:
        if 200 <= status < 300:
            if operation.kind == "delete":
                return WriteResult(operation.ref, ok=True, record_id=operation.record_id)
            return self._row_result(operation, body if isinstance(body, dict) else {})
        error = error_from_parts(status, body, headers)
        infer_field(error, operation.values)
        # A 404 on a create names a missing related record; on an update/delete it is the record itself.
        if error.kind == ErrorKind.NOT_FOUND and operation.kind == "create":
            error.kind = ErrorKind.MISSING_DEPENDENCY
        return WriteResult(operation.ref, ok=False, record_id=operation.record_id, error=self._scrubbed(error))

    def _row_result(self, operation: WriteOperation, row: dict[str, Any]) -> WriteResult:
        return WriteResult(
            operation.ref,
            ok=True,
            record_id=as_uuid(row.get("id")) or operation.record_id,
            etag=row.get("@odata.etag"),
            modified_on=parse_datetime(row.get("lastModifiedDateTime")),
            row=row,
        )

    def _recover_unknown(self, chunk: Chunk, results: dict[int, WriteResult]) -> Chunk:
        """The batch may or may not have been applied: look at the rows before sending anything again."""
        logger.warning("A Business Central batch of %d writes had an unknown outcome; checking the rows", len(chunk))
        resend = []
        by_set: dict[str, list[UUID]] = {}
        for _, operation in chunk:
            if operation.record_id:
                by_set.setdefault(operation.entity_set, []).append(operation.record_id)
        current = {
            entity_set: self.read_by_ids(entity_set, ids) for entity_set, ids in by_set.items()
        }  # one read per entity set
        for index, operation in chunk:
            rows = current.get(operation.entity_set, {})
            if operation.kind == "delete":
                if operation.record_id in rows:
                    resend.append((index, operation))
                else:
                    results[index] = WriteResult(operation.ref, ok=True, record_id=operation.record_id)
            elif operation.record_id and operation.kind in ("update", "upsert"):
                row = rows.get(operation.record_id)
                if row is None:
                    error = ConnectorError(ErrorKind.NOT_FOUND, "The record no longer exists.")
                    results[index] = WriteResult(operation.ref, ok=False, record_id=operation.record_id, error=error)
                elif _values_applied(operation.values, row):
                    results[index] = self._row_result(operation, row)
                elif operation.etag is None or row.get("@odata.etag") == operation.etag:
                    resend.append((index, operation))  # our write did not land; the row is as we last saw it
                else:
                    results[index] = WriteResult(
                        operation.ref,
                        ok=False,
                        record_id=operation.record_id,
                        error=ConnectorError(
                            ErrorKind.CONFLICT, "Another user has already changed the record.", status=409
                        ),
                    )
            else:
                row = self._find_created(operation)
                if row is not None:
                    results[index] = self._row_result(operation, row)
                elif row is None and operation.values.get("number"):
                    resend.append((index, operation))
                else:
                    results[index] = WriteResult(
                        operation.ref,
                        ok=False,
                        error=ConnectorError(
                            ErrorKind.TRANSIENT,
                            "The connection dropped while creating this record and it has no number to look it up "
                            "by: check for it before creating it again.",
                            outcome_unknown=True,
                        ),
                    )
        return resend

    def _find_created(self, operation: WriteOperation) -> dict[str, Any] | None:
        number = operation.values.get("number")
        if not number:
            return None
        for page in self.read_pages(operation.entity_set, filter=f"number eq {string_literal(number)}"):
            for row in page.rows:
                return row
        return None

    def batch_get(self, entity_set: str, queries: list[dict[str, str]]) -> list[dict[str, Any] | None]:
        path = self.company_path(entity_set)
        requests = [
            {"id": str(i), "method": "GET", "url": f"{path}?{httpx.QueryParams(query)}"}
            for i, query in enumerate(queries)
        ]
        route, _ = split_route(entity_set)
        response = self.request(
            "POST", f"{self.api_root(route)}/$batch", kind="read", json={"requests": requests}, idempotent=True
        )
        body = answer_shapes.json_object(response, service=self.service, expected="a JSON batch answer")
        if not isinstance(body.get("responses"), list):
            raise answer_shapes.malformed(self.service, "a batch answer without 'responses'", response)
        parts = {str(part.get("id")): part for part in body["responses"] if isinstance(part, dict)}
        answers: list[dict[str, Any] | None] = []
        for i in range(len(queries)):
            part = parts.get(str(i)) or {}
            status = int(part.get("status") or 0)
            if 200 <= status < 300:
                answers.append(part.get("body") or {})
            elif status in (0, *PER_PART_RETRY_STATUSES, 502, 504):
                answers.append(None)
            else:
                raise self._scrubbed(error_from_parts(status, part.get("body"), part.get("headers") or {}))
        return answers

    # -- metadata ---------------------------------------------------------------------------------------------------

    def metadata_xml(self, route: str = STANDARD_ROUTE) -> str:
        if route not in self._metadata_xml:
            response = self.request(
                "GET", f"{self.api_root(route)}/$metadata", kind="metadata", headers={"Accept": "application/xml"}
            )
            self._metadata_xml[route] = response.text
        return self._metadata_xml[route]

    def load_table_info(self, entity_set: str) -> TableInfo:
        route, name = split_route(entity_set)
        tables = parse_bc_metadata(self.metadata_xml(route))
        if name not in tables or name == "companies":
            raise ConnectorError(
                ErrorKind.NOT_FOUND, f"Business Central does not offer the entity set {entity_set!r} ($metadata)."
            )
        return replace(tables[name], entity_set=entity_set)

    def tables(self, route: str = STANDARD_ROUTE) -> list[str]:
        """The company-scoped entity sets of one API route, named as a mapping names them."""
        names = sorted(name for name in parse_bc_metadata(self.metadata_xml(route)) if name != "companies")
        return names if route == STANDARD_ROUTE else [f"{route}/{name}" for name in names]


def _route_chunks(pending: Chunk, size: int) -> list[Chunk]:
    """Batches of at most `size`, each of one API route: a `$batch` is sent to one route's endpoint."""
    by_route: dict[str, Chunk] = {}
    for item in pending:
        by_route.setdefault(split_route(item[1].entity_set)[0], []).append(item)
    return [chunk for items in by_route.values() for chunk in chunked(items, size)]


def _values_applied(values: dict[str, Any], row: dict[str, Any]) -> bool:
    """True when the row already holds every value we meant to write (compared as the service returns them)."""
    for name, wanted in values.items():
        if name.startswith("@") or "@odata." in name:
            continue
        if name not in row:
            return False
        have = row[name]
        if isinstance(wanted, str) and isinstance(have, str):
            if wanted.strip().upper() != have.strip().upper():  # Code fields come back upper-cased
                return False
        elif isinstance(wanted, int | float) and isinstance(have, int | float):
            if abs(float(wanted) - float(have)) > 1e-9:
                return False
        elif wanted != have:
            return False
    return True
