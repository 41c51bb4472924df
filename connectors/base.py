"""What both clients share: the HTTP choke point (auth, retries, throttle, counting) and the OData reads."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Self
from uuid import UUID

import httpx

from connectors import answers, observers, resilience
from connectors.auth import BearerAuth, TokenProvider
from connectors.errors import error_from_exception, error_from_response
from connectors.http import build_http_client
from connectors.models import AppRegistration, Connection
from connectors.odata import and_filters, as_uuid, chunked, datetime_literal, eq_any, with_fields
from connectors.resilience import Attempt, RetryPolicy, Throttle
from connectors.secrets import SecretUnreadable
from connectors.types import ConnectorError, ErrorKind, Page, TableInfo

logger = logging.getLogger("connectors")

_BEARER = re.compile(r"Bearer\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)

# Ids per `read_by_ids` GET where the service publishes no URL limit: `id eq <guid> or ...` stays near 5 KB.
IDS_PER_REQUEST = 100
# Left free below a URL limit, for what the service may add to a URL it hands back: a Dataverse next link is the
# query plus a `$skiptoken` paging cookie (about 300 characters, encoded twice, for a key-ordered read).
URL_ROOM = 1024
_SOME_ID = UUID(int=0)  # any id: every GUID's `key eq <guid>` term is as long, so one measures them all
# Dataverse's recommended degree of parallelism for the environment, on its answers (send-parallel-requests).
DOP_HINT_HEADER = "x-ms-dop-hint"


@dataclass
class Identity:
    """One app registration the client calls as: its own token, and its own throttle, since both services count
    their limits per user (Dataverse api-limits, Business Central operational-limits-online)."""

    client_id: str
    tokens: TokenProvider
    auth: BearerAuth
    throttle: Throttle


class ODataClient:
    """One pooled httpx client per object; use it as a context manager or call close()."""

    id_field = "id"
    modified_field = "lastModifiedDateTime"
    modified_with_milliseconds = True
    max_page_size = 5000
    max_batch_size = 100
    default_headers: dict[str, str] = {"Accept": "application/json"}

    def __init__(self, connection: Connection, *, retry_policy: RetryPolicy | None = None):
        self.connection = connection
        self.request_counts: Counter[str] = Counter()
        self.retry_policy = retry_policy or RetryPolicy()
        self.throttle = Throttle(
            max_concurrency=connection.max_concurrency,
            max_batch_size=max(1, min(connection.batch_size or self.max_batch_size, self.max_batch_size)),
        )
        self.base_url = connection.api_base_url.rstrip("/")
        self.http = build_http_client(
            timeout_seconds=float(connection.timeout_seconds or 60),
            # The writer's parallel requests, plus the read-ahead of the next page and a token request.
            max_connections=max(2, connection.max_concurrency + 2),
        )
        self._counts_lock = threading.Lock()
        self._read_timeout = float(connection.timeout_seconds or 60)
        # Per kind of request: how long answers take, for the timeout of idempotent requests (resilience).
        self._response_times: defaultdict[str, resilience.ResponseTimes] = defaultdict(resilience.ResponseTimes)
        self.throttle_wait_seconds = 0.0  # slept because the service throttled us (429), all threads together
        self.dop_hint: int | None = None  # the latest `x-ms-dop-hint` the service sent
        self.answered = False  # an API answer came: the service had its say on the parallelism, if it has one
        self._secrets: list[str] = []  # every registration's, scrubbed out of error texts
        self.identities = [self._identity(connection.client_id, self._connection_secret(connection))]
        if connection.pk is not None:
            registrations = connection.app_registrations.filter(enabled=True).order_by("pk")
            self.identities += [self._identity(r.client_id, self._registration_secret(r)) for r in registrations]
        self._turns = itertools.cycle(range(len(self.identities)))
        self._turns_lock = threading.Lock()
        # The connection's own registration: what "Test connection" and the callers that want a token use.
        self.tokens = self.identities[0].tokens
        self.auth = self.identities[0].auth
        if self.per_user_concurrency is not None:
            self.throttle.set_ceiling(self.per_user_concurrency * len(self.identities))
        self._table_info: dict[str, TableInfo] = {}
        # A lower bound of (the server's clock - ours), from the answers' Date; None until an answer had one.
        self.server_clock_offset: timedelta | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.connection.name!r}>"

    # Requests in flight one user may have (Business Central: 5); None where only the service's hint says.
    per_user_concurrency: int | None = None

    @staticmethod
    def _connection_secret(connection: Connection) -> tuple[str, str]:
        try:
            return connection.client_secret, ""
        except SecretUnreadable as exc:  # reported, classified, at the first call rather than when opening
            return "", str(exc)

    @staticmethod
    def _registration_secret(registration: AppRegistration) -> tuple[str, str]:
        try:
            return registration.client_secret, ""
        except SecretUnreadable as exc:
            return "", f"App registration {registration.client_id}: {exc}"

    def _identity(self, client_id: str, secret: tuple[str, str]) -> Identity:
        connection = self.connection
        self._secrets.append(secret[0])
        tokens = TokenProvider(
            token_url=connection.effective_token_url,
            client_id=client_id,
            client_secret=secret[0],
            secret_problem=secret[1],
            scope=connection.effective_scope,
            timeout=self.http.timeout,
            send_with_retries=lambda send, kind: self._with_retries(send, kind, idempotent=True, url=None),
            connection_id=connection.pk,
            service=connection.kind,
        )
        own = Throttle(
            max_concurrency=self.per_user_concurrency or connection.max_concurrency,
            max_batch_size=self.throttle.max_batch_size,
        )
        return Identity(client_id, tokens, BearerAuth(tokens), own)

    def _next_identity(self) -> Identity:
        """The app registrations in turn, one request each; one whose own slots are all taken is passed over."""
        with self._turns_lock:
            for _ in self.identities:
                identity = self.identities[next(self._turns)]
                if identity.throttle.has_free_slot():
                    return identity
            return identity

    def parallelism(self) -> int:
        """How many requests the engine may have in flight now: the connection's concurrency as the throttle has
        it, never above the service's hint or per-user limit times the app registrations."""
        return self.throttle.concurrency

    def hear_parallelism(self) -> None:
        """Nothing: Business Central tells no parallelism; its limit (5 per user) is known beforehand."""

    def write_batch_size(self) -> int:
        return self.throttle.batch_size

    def note_throttle_wait(self, seconds: float) -> None:
        with self._counts_lock:
            self.throttle_wait_seconds += seconds

    def count_request(self, kind: str) -> None:
        with self._counts_lock:  # the writer's threads share the counter
            self.request_counts[kind] += 1

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- the choke point ----------------------------------------------------------------------------------------

    @property
    def service(self) -> str:
        """The service's name for messages: Business Central or Dataverse."""
        return self.connection.get_kind_display()

    def url(self, path: str) -> str:
        """The full URL of `path`; a full URL (a link from an answer) only on the connection's own origin.

        Every request passes here before the bearer token is attached, so no link a server sends can lead the token
        to another host.
        """
        if "://" in path:
            return answers.same_origin(path, self.base_url, service=self.service)
        return f"{self.base_url}/{path.lstrip('/')}"

    def collection_answer(self, response: httpx.Response) -> dict[str, Any]:
        return answers.collection(response, service=self.service)

    def next_link(self, body: dict[str, Any], followed: set[str]) -> str | None:
        """The page's next link, refused when it repeats one already followed (the run would loop for ever)."""
        link: str | None = body.get("@odata.nextLink")
        if link is None:
            return None
        if link in followed:
            raise answers.malformed(self.service, f"a next link it had already given ({link[:200]!r}), a loop")
        followed.add(link)
        return link

    def request(
        self,
        method: str,
        url: str,
        *,
        kind: str,
        idempotent: bool | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send one call with auth, retries and throttling; return a 2xx/3xx response or raise ConnectorError."""
        full_url = self.url(url)
        merged = {**self.default_headers, **(headers or {})}
        if json is not None:
            merged.setdefault("Content-Type", "application/json")
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS")

        def send(identity: Identity | None, timeout: float | None = None) -> httpx.Response:
            auth = identity.auth if identity is not None else self.auth
            extra: dict[str, Any] = {}
            if timeout is not None:  # an idempotent request cut short sooner than the connection's timeout
                extra["timeout"] = httpx.Timeout(self._read_timeout, connect=self.http.timeout.connect, read=timeout)
            return self.http.request(
                method, full_url, params=params, headers=merged, json=json, content=content, auth=auth, **extra
            )

        return self._with_retries(send, kind, idempotent=idempotent, url=full_url)

    def _with_retries(
        self, send: Callable[..., httpx.Response], kind: str, *, idempotent: bool, url: str | None
    ) -> httpx.Response:
        """Send with retries. An API request (`url` set) holds a slot of the connection and one of the app
        registration whose turn it is; a token request holds none, as it runs inside an API request's slot.
        A retry waits outside any slot, so a throttled or failing request does not stall the others; an idempotent
        request that hangs is cut short once it took far longer than its kind's answers do (resilience.ResponseTimes)
        and sent again, so it holds its slot for seconds rather than the connection's whole timeout."""
        policy = self.retry_policy
        waited = 0.0
        number = 0
        while True:
            number += 1
            self.count_request(kind)
            identity = self._next_identity() if url is not None else None
            times = self._response_times[kind] if url is not None and idempotent else None
            started = 0.0
            try:
                with ExitStack() as slots:
                    if identity is not None:
                        slots.enter_context(self.throttle.slot())
                        slots.enter_context(identity.throttle.slot())
                        started = time.monotonic()
                        timeout = times.timeout(number, self._read_timeout) if times is not None else None
                        attempt = Attempt(response=send(identity, timeout) if timeout else send(identity))
                    else:
                        attempt = Attempt(response=send())
            except httpx.HTTPError as exc:
                attempt = Attempt(exception=exc)
            response = attempt.response
            if times is not None and response is not None and response.status_code < 400:
                times.note(time.monotonic() - started)
            if url is not None and kind == "write" and isinstance(attempt.exception, resilience.TOO_SLOW_EXCEPTIONS):
                self.throttle.on_too_slow()  # later writes carry fewer records
                if identity is not None:
                    identity.throttle.on_too_slow()
            if response is not None and url is not None:
                self.answered = True
                self._note_dop_hint(response)
            if url is not None:  # an API request: what the service counts against its limits (token requests aside)
                status = response.status_code if response is not None else None
                observers.notify(
                    self.connection.pk, self.connection.kind, kind, status, retried=number > 1, token_failure=False
                )
            if response is not None and response.status_code < 400:
                self.throttle.on_success()
                if identity is not None:
                    identity.throttle.on_success()
                if url is not None:  # an API answer; a token answer comes from another server, with its own clock
                    self._note_server_clock(response)
                return response
            throttled = response is not None and response.status_code == 429
            if throttled:
                self.throttle.on_throttled()
                if identity is not None:
                    identity.throttle.on_throttled()
            if number < policy.max_attempts and resilience.should_retry(attempt, idempotent=idempotent):
                delay = resilience.delay_before_retry(attempt, number, policy)
                if waited + delay <= policy.max_total_wait:
                    reason = response.status_code if response is not None else type(attempt.exception).__name__
                    logger.info("Retrying a %s request in %.1f s after %s (attempt %d)", kind, delay, reason, number)
                    self.count_request("retry")
                    resilience.sleep(delay)
                    waited += delay
                    if throttled:
                        self.note_throttle_wait(delay)
                    continue
            if response is not None:
                response.read()
                error = error_from_response(response)
            else:
                assert attempt.exception is not None  # an attempt has a response or an exception
                error = error_from_exception(attempt.exception, url)
            error.outcome_unknown = resilience.outcome_unknown(attempt, idempotent=idempotent)
            raise self._scrubbed(error)

    def _note_dop_hint(self, response: httpx.Response) -> None:
        """Cap the concurrency at the service's recommended degree of parallelism (per app registration)."""
        value = response.headers.get(DOP_HINT_HEADER)
        if not value:
            return
        try:
            hint = max(1, int(value))
        except ValueError:
            return
        if hint != self.dop_hint:
            self.dop_hint = hint
            self.throttle.set_ceiling(hint * len(self.identities))

    def _note_server_clock(self, response: httpx.Response) -> None:
        """Keep a lower bound of how far the server's clock is ahead of ours, from the answer's `Date` header.

        The server wrote the header, truncated to the second, before we received the answer: so its clock showed
        at least `Date` when ours showed `now`, and the difference can only underestimate the server's time.
        """
        try:
            server = parsedate_to_datetime(response.headers.get("date", ""))
        except (TypeError, ValueError):
            return
        if server.tzinfo is None:
            return
        offset = server - datetime.now(UTC)
        # The smallest seen: behind a load balancer, answers come from servers whose clocks differ a little.
        if self.server_clock_offset is None or offset < self.server_clock_offset:
            self.server_clock_offset = offset

    def server_time_at(self, moment: datetime) -> datetime:
        """The earliest time the server's clock can have shown when ours showed `moment` (as is, if unknown)."""
        return moment if self.server_clock_offset is None else moment + self.server_clock_offset

    def _scrubbed(self, error: ConnectorError) -> ConnectorError:
        """Defence in depth: no secret or bearer token ever leaves in an error, whatever the server echoed."""
        tokens = [identity.tokens.current() for identity in self.identities]
        secrets = [s for s in (*self._secrets, *tokens) if s and len(s) >= 4]
        for secret in secrets:
            error.message = error.message.replace(secret, "[secret]")
            error.response_excerpt = error.response_excerpt.replace(secret, "[secret]")
        error.message = _BEARER.sub("Bearer [token]", error.message)
        error.response_excerpt = _BEARER.sub("Bearer [token]", error.response_excerpt)
        error.args = (error.message,)
        return error

    # -- reads ----------------------------------------------------------------------------------------------------

    def collection_url(self, entity_set: str) -> str:
        raise NotImplementedError

    def entity_url(self, entity_set: str, record_id: UUID) -> str:
        return f"{self.collection_url(entity_set)}({record_id})"

    def primary_key(self, entity_set: str) -> str:
        return self.id_field

    def page_headers(self, page_size: int) -> dict[str, str]:
        return {"Prefer": f"odata.maxpagesize={page_size}"}

    def modified_filter(self, modified_since: datetime | None) -> str | None:
        if modified_since is None:
            return None
        literal = datetime_literal(modified_since, milliseconds=self.modified_with_milliseconds)
        # `ge`, not `gt`: many rows can share a timestamp; the engine's watermark overlap re-reads, never skips.
        return f"{self.modified_field} ge {literal}"

    def read_pages(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        modified_since: datetime | None = None,
        select: list[str] | None = None,
        page_size: int | None = None,
        orderby: str | None = None,
    ) -> Iterator[Page]:
        """Yield server-driven pages; nextLinks are followed verbatim with the same `odata.maxpagesize`."""
        params: dict[str, str] = {}
        combined = and_filters(filter, self.modified_filter(modified_since))
        if combined:
            params["$filter"] = combined
        fields = with_fields(select, self.primary_key(entity_set), self.modified_field)
        if fields:
            params["$select"] = ",".join(fields)
        if orderby:
            params["$orderby"] = orderby
        size = max(1, min(page_size or self.connection.page_size or self.max_page_size, self.max_page_size))
        headers = self.page_headers(size)
        url: str | None = self.collection_url(entity_set)
        query: dict[str, str] | None = params
        followed: set[str] = set()
        while url:
            body = self.collection_answer(self.request("GET", url, kind="read", params=query, headers=headers))
            next_link = self.next_link(body, followed)
            yield Page(rows=body["value"], next_link=next_link)
            url, query = next_link, None

    def changed_after(self, entity_set: str, moment: datetime | None, *, filter: str | None = None) -> bool:
        """Whether a row matching `filter` was modified after `moment` (any row, without `moment`): one GET with
        `$top=1`, selecting the key only. Strictly after: the rows at `moment` itself are the ones already read.

        No `odata.maxpagesize` preference: Dataverse ignores `$top` when it is present."""
        key = self.primary_key(entity_set)
        after = None
        if moment is not None:
            after = f"{self.modified_field} gt {datetime_literal(moment, milliseconds=self.modified_with_milliseconds)}"
        params = {"$select": key, "$top": "1"}
        combined = and_filters(filter, after)
        if combined:
            params["$filter"] = combined
        body = self.collection_answer(self.request("GET", self.collection_url(entity_set), kind="read", params=params))
        return bool(body["value"])

    def read_by_ids(
        self, entity_set: str, ids: list[UUID], *, select: list[str] | None = None, filter: str | None = None
    ) -> dict[UUID, dict[str, Any]]:
        """Return the rows that exist among `ids` (and match `filter`), keyed by id; missing ids are simply absent.

        The ids go in `id eq a or id eq b ...` filters, as many per GET as the service's URL limit allows
        (`ids_per_get`): ids that fit one GET go as one; more go as one `$batch` of such GETs, where the service may
        allow longer URLs, so a page of counterparts (or a bulk write's read-back) is still read in one request.
        """
        key = self.primary_key(entity_set)
        unique = list(dict.fromkeys(i for i in (as_uuid(v) for v in ids) if i))
        if not unique:
            return {}
        found: dict[UUID, dict[str, Any]] = {}

        def keep(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                record_id = as_uuid(row.get(key))
                if record_id:
                    found[record_id] = row

        fields = with_fields(select, key, self.modified_field)  # what read_pages and batch GETs send
        per_get = self.ids_per_get(entity_set, key, fields, filter, batched=False)

        def read_unbatched(chunk: list[UUID]) -> None:
            for part in chunked(chunk, per_get):
                ids_filter = self._ids_filter(key, part, filter)
                # Pages as large as the service gives: a next link repeats the long URL, so none is wanted.
                for page in self.read_pages(entity_set, filter=ids_filter, select=select, page_size=self.max_page_size):
                    keep(page.rows)

        if len(unique) <= per_get:
            read_unbatched(unique)
            return found
        chunks = list(chunked(unique, self.ids_per_get(entity_set, key, fields, filter, batched=True)))
        for group in chunked(chunks, self.max_read_batch):
            queries = [self._ids_query(key, chunk, fields, filter) for chunk in group]
            for chunk, answer in zip(group, self.batch_get(entity_set, queries), strict=True):
                if answer is None:  # throttled or unavailable inside the batch: read it on its own, with retries
                    read_unbatched(chunk)
                    continue
                keep(answer.get("value", []))
                followed: set[str] = set()
                next_link = self.next_link(answer, followed)
                if next_link and self.max_url_length is not None and len(next_link) > self.max_url_length:
                    # The service paged smaller than asked, and its link is too long for a GET on its own: read the
                    # chunk again in GETs that fit (its first page, kept already, is read twice; `keep` is by id).
                    read_unbatched(chunk)
                    continue
                while next_link:
                    body = self.collection_answer(
                        self.request("GET", next_link, kind="read", headers=self.page_headers(self.max_page_size))
                    )
                    keep(body["value"])
                    next_link = self.next_link(body, followed)
        return found

    # The longest URL the service takes, on its own and inside a `$batch`; None where the service publishes no
    # limit: then ids go IDS_PER_REQUEST to a GET, a URL of about 5 KB.
    max_url_length: int | None = None
    max_batched_url_length: int | None = None

    def ids_per_get(
        self, entity_set: str, key: str, select: list[str] | None, filter: str | None, *, batched: bool
    ) -> int:
        """How many ids one `read_by_ids` GET may carry within the service's URL limit (a GUID's term is always
        as long, so the count is exact), with room left for what a nextLink's `$skiptoken` adds."""
        limit = self.max_batched_url_length if batched else self.max_url_length
        if limit is None:
            return IDS_PER_REQUEST
        url = self.collection_url(entity_set)
        one = _url_length(url, self._ids_query(key, [_SOME_ID], select, filter))
        per_id = _url_length(url, self._ids_query(key, [_SOME_ID, _SOME_ID], select, filter)) - one
        if one > limit - URL_ROOM:
            raise ConnectorError(
                ErrorKind.VALIDATION,
                f"The filter is too long to read records by id: {one:,} characters of URL with a single id, and "
                f"{self.service} takes {limit:,}.",
            )
        return (limit - URL_ROOM - one) // per_id + 1

    def _ids_query(self, key: str, ids: list[UUID], select: list[str] | None, filter: str | None) -> dict[str, str]:
        query = {"$filter": self._ids_filter(key, ids, filter)}
        if select:
            query["$select"] = ",".join(select)
        return query

    @staticmethod
    def _ids_filter(key: str, ids: list[UUID], filter: str | None) -> str:
        ids_filter = eq_any(key, ids)
        return f"({ids_filter}) and ({filter})" if filter else ids_filter

    # Most GETs one `$batch` may carry.
    max_read_batch = 100

    def batch_get(self, entity_set: str, queries: list[dict[str, str]]) -> list[dict[str, Any] | None]:
        """Send several GETs of one entity set in one `$batch`; a body per query, None where it should be retried."""
        raise NotImplementedError

    def count(self, entity_set: str, *, filter: str | None = None) -> int:
        """Count matching rows: `@odata.count` when the service gives an exact one, else count the ids page by page."""
        key = self.primary_key(entity_set)
        params = {"$select": key, "$count": "true"}
        if filter:
            params["$filter"] = filter
        response = self.request(
            "GET", self.collection_url(entity_set), kind="read", params=params, headers=self.page_headers(1)
        )
        body = self.collection_answer(response)
        reported = body.get("@odata.count")
        if isinstance(reported, int) and self.count_is_exact(reported, body):
            return reported
        return sum(len(page.rows) for page in self.read_pages(entity_set, filter=filter, select=[key]))

    def count_is_exact(self, reported: int, body: dict[str, Any]) -> bool:
        return True

    # -- metadata -------------------------------------------------------------------------------------------------

    def table_info(self, entity_set: str) -> TableInfo:
        if entity_set not in self._table_info:
            self._table_info[entity_set] = self.load_table_info(entity_set)
        return self._table_info[entity_set]

    def load_table_info(self, entity_set: str) -> TableInfo:
        raise NotImplementedError


def _url_length(url: str, params: dict[str, str]) -> int:
    """The length of the URL httpx sends for `url` with `params`, encoding included."""
    return len(str(httpx.URL(url, params=params)))
