"""A run sends a page's bulk writes in parallel, within what the connection and the service allow (issue 18).

The runs are real (sandbox in this process, real HTTP semantics); a wire in front of the sandbox slows every request
so that they overlap, counts those in flight per service, and plays the parts the sandbox cannot play in one process:
Dataverse's `x-ms-dop-hint` header and a 429 with `Retry-After`. It also tells which app registration sent each
request, from the token it carries.
"""

import threading
import time
from collections import Counter
from urllib.parse import parse_qs

import httpx
import pytest
from django.urls import reverse

from connectors import resilience
from connectors.auth import clear_token_cache
from connectors.clients import open_client
from connectors.http import override_transport
from connectors.models import AppRegistration, Connection
from coupling.models import Coupling
from jobs.choices import JobKind, JobStatus
from jobs.models import SyncJob
from jobs.services import sync_jobs_create, sync_jobs_run
from sandbox import services as sandbox

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])

RECORDS = 60  # with pages of 50 and batches of 10: a first page of five bulk requests, then one of one
BATCH = 10


class Wire(httpx.BaseTransport):
    """In front of the sandbox: every API request takes `delay` seconds; counts in flight per service."""

    def __init__(self, sandbox_transport, *, delay=0.05, dop_hint=None, throttle_writes=0, retry_after=1):
        self.inner = sandbox_transport
        self.delay = delay
        self.dop_hint = dop_hint
        self.throttle_writes = throttle_writes  # the next this many writes to Dataverse are refused with 429
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.write_peaks: dict[str, list[int]] = {"bc": [], "dataverse": []}  # in flight as each write arrived
        self.peak: Counter[str] = Counter()
        self.client_of_token: dict[str, str] = {}
        self.requests_by_client: Counter[tuple[str, str]] = Counter()
        self.throttled_at: int | None = None  # index in write_peaks["dataverse"] of the throttled write

    def handle_request(self, request):
        if request.url.path.endswith("/token"):
            response = self.inner.handle_request(request)
            response.read()
            client_id = parse_qs(request.content.decode())["client_id"][0]
            self.client_of_token[response.json()["access_token"]] = client_id
            return response
        service = "bc" if "/sandbox/bc/" in request.url.path else "dataverse"
        writing = is_write(request)
        token = request.headers["authorization"].removeprefix("Bearer ")
        with self.lock:
            self.in_flight[service] += 1
            self.peak[service] = max(self.peak[service], self.in_flight[service])
            self.requests_by_client[service, self.client_of_token.get(token, "?")] += 1
            throttle = writing and service == "dataverse" and self.throttle_writes > 0
            if writing:
                self.write_peaks[service].append(self.in_flight[service])
            if throttle:
                self.throttle_writes -= 1
                self.throttled_at = len(self.write_peaks[service]) - 1
        try:
            time.sleep(self.delay)
            if throttle:
                return httpx.Response(
                    429,
                    headers={"Retry-After": str(self.retry_after)},
                    json={"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit."}},
                )
            response = self.inner.handle_request(request)
            response.read()
        finally:
            with self.lock:
                self.in_flight[service] -= 1
        if self.dop_hint and service == "dataverse":
            response.headers["x-ms-dop-hint"] = str(self.dop_hint)
        return response


def is_write(request) -> bool:
    if request.method not in ("POST", "PATCH", "DELETE"):
        return False
    if not request.url.path.endswith("$batch"):
        return True
    body = request.content  # a batch of reads: Business Central's JSON or Dataverse's multipart
    return b'"GET"' not in body and b"\nGET " not in body


@pytest.fixture
def customers(sandbox_http, make_sandbox_connections, customer):
    """RECORDS customers in Business Central, none in Dataverse; Dataverse written in batches of BATCH."""
    clear_token_cache()
    customer.table_filter = ""  # every record, so that the pages are full
    customer.save()
    bc, dataverse = make_sandbox_connections("http://testserver", page_size=50)
    sandbox.seed_demo(customers=RECORDS, accounts=0, shared=0, reset=True)
    Connection.objects.filter(pk__in=[bc.pk, dataverse.pk]).update(batch_size=BATCH)
    yield customer
    clear_token_cache()


@pytest.fixture
def sleeps(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(resilience, "sleep", slept.append)
    return slept


def full_sync(mapping, direction="to_dataverse") -> SyncJob:
    jobs = sync_jobs_create(mapping=mapping, kind=JobKind.FULL, direction=direction)
    sync_jobs_run(job_ids=[job.pk for job in jobs])
    return SyncJob.objects.get(pk=jobs[0].pk)


def rows_in(kind: str, entity_set: str) -> int:
    with open_client(Connection.objects.get(kind=kind)) as client:
        return sum(len(page.rows) for page in client.read_pages(entity_set))


def dataverse_accounts() -> int:
    return rows_in("dataverse", "accounts")


def test_a_pages_writes_go_in_parallel_up_to_the_connections_concurrency(customers, sandbox_http, sleeps):
    Connection.objects.filter(kind="dataverse").update(max_concurrency=4)
    wire = Wire(sandbox_http)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted, job.failed) == (JobStatus.SUCCEEDED, RECORDS, 0), job.message
    assert dataverse_accounts() == RECORDS
    assert Coupling.objects.filter(table_mapping=customers, pending=False).count() == RECORDS
    assert max(wire.write_peaks["dataverse"]) == 4  # five bulk requests of the first page, four at once
    assert wire.peak["dataverse"] <= 4  # reads of the same client included
    assert job.concurrency == 4 and job.throttle_wait_seconds == 0


def test_max_concurrency_1_writes_one_request_at_a_time(customers, sandbox_http, sleeps):
    Connection.objects.filter(kind="dataverse").update(max_concurrency=1)
    wire = Wire(sandbox_http)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted) == (JobStatus.SUCCEEDED, RECORDS)
    assert dataverse_accounts() == RECORDS
    assert wire.peak["dataverse"] == 1
    assert job.concurrency == 1


def test_the_dataverse_dop_hint_caps_the_parallel_writes(customers, sandbox_http, sleeps):
    Connection.objects.filter(kind="dataverse").update(max_concurrency=8)
    wire = Wire(sandbox_http, dop_hint=2)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted) == (JobStatus.SUCCEEDED, RECORDS)
    assert dataverse_accounts() == RECORDS
    assert max(wire.write_peaks["dataverse"]) == 2
    assert wire.peak["dataverse"] <= 2
    assert job.concurrency == 2


def test_business_central_gets_at_most_5_requests_at_once(sandbox_http, make_sandbox_connections, customer, sleeps):
    clear_token_cache()
    customer.integration_table_filter = ""  # every account, so that the pages are full
    customer.save()
    bc, dataverse = make_sandbox_connections("http://testserver", page_size=50)
    sandbox.seed_demo(customers=0, accounts=RECORDS, shared=0, reset=True)
    # More than Business Central serves for one user (the form refuses it; an older row may hold it).
    Connection.objects.filter(pk=bc.pk).update(batch_size=BATCH, max_concurrency=8)
    Connection.objects.filter(pk=dataverse.pk).update(batch_size=BATCH, max_concurrency=8)
    wire = Wire(sandbox_http)
    with override_transport(wire):
        job = full_sync(customer, direction="from_dataverse")

    assert (job.status, job.inserted, job.failed) == (JobStatus.SUCCEEDED, RECORDS, 0), job.message
    assert rows_in("business_central", "customers") == RECORDS
    assert max(wire.write_peaks["bc"]) == 5
    assert wire.peak["bc"] <= 5
    assert job.concurrency == 5


def test_a_429_is_waited_out_as_retry_after_says_and_halves_the_concurrency(customers, sandbox_http, sleeps):
    Connection.objects.filter(kind="dataverse").update(max_concurrency=4)
    wire = Wire(sandbox_http, throttle_writes=1, retry_after=3)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted, job.failed) == (JobStatus.SUCCEEDED, RECORDS, 0), job.message
    assert dataverse_accounts() == RECORDS
    assert 3 in sleeps and max(sleeps) >= 3  # Retry-After honoured, not the shorter backoff
    assert job.throttle_wait_seconds >= 3
    assert job.concurrency == 2  # halved from 4, not yet grown back (that takes 20 answers)
    # Writes that started after those in flight at the 429 had ended: never more than two at once.
    later = wire.write_peaks["dataverse"][wire.throttled_at + 4 :]
    assert later and max(later) <= 2


def test_the_app_registrations_of_a_connection_are_used_in_turn(customers, sandbox_http, sleeps):
    dataverse = Connection.objects.get(kind="dataverse")
    Connection.objects.filter(pk=dataverse.pk).update(max_concurrency=4)
    sandbox.register_client(client_id="syncadmin-tests-2", client_secret="second-secret")  # noqa: S106
    registration = AppRegistration(connection=dataverse, client_id="syncadmin-tests-2")
    registration.set_client_secret("second-secret")
    registration.save()
    wire = Wire(sandbox_http)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted) == (JobStatus.SUCCEEDED, RECORDS)
    assert dataverse_accounts() == RECORDS
    assert set(wire.client_of_token.values()) == {"syncadmin-tests", "syncadmin-tests-2"}
    first = wire.requests_by_client["dataverse", "syncadmin-tests"]
    second = wire.requests_by_client["dataverse", "syncadmin-tests-2"]
    assert wire.requests_by_client["dataverse", "?"] == 0
    # In turn: as many requests each, give or take one passed over while its slots were all taken.
    assert first >= 3 and second >= 3 and abs(first - second) <= 2, (first, second)
    assert wire.requests_by_client["bc", "syncadmin-tests-2"] == 0  # Business Central's connection has none
    assert "second-secret" not in registration.client_secret_encrypted


def test_the_job_page_shows_the_concurrency_and_the_time_waited_for_throttling(
    customers, sandbox_http, sleeps, admin_client
):
    Connection.objects.filter(kind="dataverse").update(max_concurrency=4)
    seen_while_running: list[str] = []

    def look_at_the_page(job):
        seen_while_running.append(
            admin_client.get(reverse("admin:jobs_syncjob_progress", args=[job.pk])).content.decode()
        )

    wire = Wire(sandbox_http, throttle_writes=1, retry_after=2)
    with override_transport(wire):
        jobs = sync_jobs_create(mapping=customers, kind=JobKind.FULL, direction="to_dataverse")
        sync_jobs_run(job_ids=[job.pk for job in jobs], on_progress=look_at_the_page)
    job = SyncJob.objects.get(pk=jobs[0].pk)

    # Page by page while it runs (the first page's numbers are on the job before the second page starts)...
    running = seen_while_running[-1]
    assert "still running" in running
    assert '<td class="syncjob-concurrency">2</td>' in running
    assert '<td class="syncjob-throttle-wait">2.0 s</td>' in running
    # ...and after.
    page = admin_client.get(reverse("admin:jobs_syncjob_change", args=[job.pk])).content.decode()
    assert job.status == JobStatus.SUCCEEDED and job.throttle_wait_seconds == 2
    assert "Requests at once (last page)" in page and '<td class="syncjob-concurrency">2</td>' in page
    assert '<td class="syncjob-throttle-wait">2.0 s</td>' in page
