"""A run sends a page's bulk writes in parallel, within what the connection and the service allow (issue 18).

The runs are real (sandbox in this process, real HTTP semantics); a wire in front of the sandbox slows every request
so that they overlap, counts those in flight per service, and plays the parts the sandbox cannot play in one process:
Dataverse's `x-ms-dop-hint` header and a 429 with `Retry-After`. It also tells which app registration sent each
request, from the token it carries.
"""

import json
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

    def handle_request(self, request, delay=None):
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
            time.sleep(self.delay if delay is None else delay)
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


def test_a_runs_first_bulk_writes_go_side_by_side_not_the_first_one_alone(customers, sandbox_http, sleeps):
    """Dataverse tells its parallelism (x-ms-dop-hint) on its answers: the run hears it with one cheap request
    (WhoAmI) before its first write, instead of sending its first bulk write alone to hear it, which under the
    service's real costs held every slot but one idle for the seconds an UpsertMultiple of 1,000 takes."""
    Connection.objects.filter(kind="dataverse").update(max_concurrency=4)
    wire = Wire(sandbox_http, dop_hint=4)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted) == (JobStatus.SUCCEEDED, RECORDS)
    assert wire.write_peaks["dataverse"][:4] == [1, 2, 3, 4]  # each of the first four arrived beside the earlier


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


# --- writes pipelined across pages -------------------------------------------------------------------------------


class TimedWire(Wire):
    """A Wire that also notes when each Dataverse bulk write started and ended, the records it carried, and the
    Business Central pages read (ids in order); with `land_first`, a request is served before the delay, so its
    records exist in the target while the run still waits for the answer."""

    def __init__(self, sandbox_transport, *, land_first=False, **kwargs):
        super().__init__(sandbox_transport, **kwargs)
        self.land_first = land_first
        self.writes: list[dict] = []  # {"start", "end", "ids", "records"}
        self.bc_pages: list[list[str]] = []

    def handle_request(self, request):
        started = time.monotonic()
        if self.land_first and is_write(request):
            inner, self.inner = self.inner, _Served(self.inner, self.delay)
            try:
                return self._noted(request, started, Wire.handle_request(self, request, delay=0))
            finally:
                self.inner = inner
        return self._noted(request, started, super().handle_request(request))

    def _noted(self, request, started, response):
        path = request.url.path
        if path.endswith("UpsertMultiple"):
            targets = json.loads(request.content)["Targets"]
            with self.lock:
                self.writes.append(
                    {
                        "start": started,
                        "end": time.monotonic(),
                        "ids": {t["accountid"] for t in targets},
                        "records": len(targets),
                        "status": response.status_code,
                    }
                )
        elif request.method == "GET" and path.endswith("/customers") and "$count" not in request.url.params:
            response.read()
            with self.lock:
                self.bc_pages.append([row["id"] for row in response.json()["value"]])
        return response


class _Served(httpx.BaseTransport):
    """Serve first, then wait: the write has landed before its answer comes back."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        response.read()
        time.sleep(self.delay)
        return response


def test_the_next_pages_writes_start_while_the_last_write_of_a_page_is_in_flight(customers, sandbox_http, sleeps):
    """Page 1 is five bulk requests for three slots: the first alone (until Dataverse's answer tells its degree of
    parallelism), then three at once, then the fifth, alone unless page 2's request joins it."""
    Connection.objects.filter(kind="dataverse").update(max_concurrency=3)
    wire = TimedWire(sandbox_http, delay=0.4)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted, job.failed) == (JobStatus.SUCCEEDED, RECORDS, 0), job.message
    assert dataverse_accounts() == RECORDS
    assert Coupling.objects.filter(table_mapping=customers, pending=False).count() == RECORDS
    page_of_bc = {bc_id: n for n, page in enumerate(wire.bc_pages) for bc_id in page}
    page_of_account = {
        str(dv): page_of_bc[str(bc)]
        for bc, dv in Coupling.objects.filter(table_mapping=customers).values_list("bc_id", "dataverse_id")
    }
    writes = {0: [], 1: []}
    for write in wire.writes:
        (page,) = {page_of_account[i] for i in write["ids"]}  # one page per request
        writes[page].append(write)
    assert (len(writes[0]), len(writes[1])) == (5, 1)
    # Page 2's request started before page 1's last request ended: the slots stayed busy across the pages.
    assert writes[1][0]["start"] < max(w["end"] for w in writes[0])
    assert wire.peak["dataverse"] <= 3  # and still within the concurrency
    assert job.progress_done == RECORDS  # every record read has its outcome


def test_a_429_lowers_the_concurrency_and_leaves_the_batches_whole(customers, sandbox_http, sleeps):
    # Batches of 20 (10 is the smallest the throttle would shrink to): pages of 50 are requests of 20, 20 and 10.
    Connection.objects.filter(kind="dataverse").update(max_concurrency=4, batch_size=20)
    wire = TimedWire(sandbox_http, throttle_writes=1, retry_after=2)
    with override_transport(wire):
        job = full_sync(customers)

    assert (job.status, job.inserted, job.failed) == (JobStatus.SUCCEEDED, RECORDS, 0), job.message
    assert dataverse_accounts() == RECORDS
    assert 2 in sleeps and job.concurrency == 2  # Retry-After honoured, the concurrency halved
    # Every bulk request, the one throttled and those after it, carried a whole batch: the page's requests of 20,
    # 20 and 10 and page 2's 10, and the throttled one sent again as it was.
    throttled = next(w["records"] for w in wire.writes if w["status"] == 429)
    assert sorted(w["records"] for w in wire.writes) == sorted([20, 20, 10, 10, throttled])
    assert sum(1 for w in wire.writes if w["status"] == 429) == 1


def run_pages(mapping, direction, pages_of_rows):
    """Process the given pages of source rows through one run, as its reader would hand them over."""
    from connectors.clients import open_client as opened
    from jobs.engine.pipeline import DirectionRun

    (job,) = sync_jobs_create(mapping=mapping, kind=JobKind.FULL, direction=direction)
    job = SyncJob.objects.select_related("table_mapping").get(pk=job.pk)
    with (
        opened(Connection.objects.get(kind="business_central")) as bc,
        opened(Connection.objects.get(kind="dataverse")) as dataverse,
    ):
        run = DirectionRun(job, bc_client=bc, dataverse_client=dataverse)
        source = bc if direction == "to_dataverse" else dataverse
        pages = pages_of_rows(
            [
                row
                for page in source.read_pages(run.source.entity_set, select=run.reader.source_select)
                for row in page.rows
            ]
        )
        with run.writing():  # on the way out, every write ends and is saved
            for rows in pages:
                run.process_page(rows)
    return SyncJob.objects.get(pk=job.pk)


def test_a_record_met_again_while_its_write_is_in_flight_is_planned_from_its_saved_coupling(
    customers, sandbox_http, sleeps
):
    """Ten records of page 1 come again in page 2 while page 1's writes are in flight: the run saves those writes
    first, so they are seen as written (not inserted twice), and every record read has its outcome."""
    Connection.objects.filter(kind="dataverse").update(max_concurrency=4)
    wire = TimedWire(sandbox_http, delay=0.4)
    with override_transport(wire):
        job = run_pages(customers, "to_dataverse", lambda rows: [rows[:50], rows[40:]])

    assert dataverse_accounts() == RECORDS
    assert Coupling.objects.filter(table_mapping=customers, pending=False).count() == RECORDS
    assert job.inserted == RECORDS  # not 70: the ten met again were not inserted a second time
    assert job.modified + job.unchanged == 10 and job.failed == 0
    assert job.progress_done == 70  # records read = outcomes


def test_matching_waits_for_the_writes_in_flight_so_a_record_created_there_is_not_taken_for_a_match(
    sandbox_http, make_sandbox_connections, customer, sleeps
):
    """Two Dataverse accounts of the same name, one on each page, matched on the name into an empty Business
    Central: the first page's create has landed but is not saved when the second page matches. Matched against
    it, the second account would share it (or be held as ambiguous); the run saves the first page's writes first,
    so the second account gets its own customer, as when pages ran one after the other."""
    from sandbox import testing

    clear_token_cache()
    customer.integration_table_filter = ""
    customer.save()
    customer.field_mappings.filter(bc_field="displayName", dataverse_field="name").update(use_for_matching=True)
    make_sandbox_connections("http://testserver", page_size=50)
    sandbox.seed_demo(customers=0, accounts=0, shared=0, reset=True)
    for number in range(20):
        testing.create_as_another_user("dataverse", "accounts", name=f"Pipelined {number:02}")
    Connection.objects.update(batch_size=5, max_concurrency=4)
    wire = TimedWire(sandbox_http, delay=0.5, land_first=True)

    def twins_on_two_pages(rows):
        rows[0]["name"] = rows[15]["name"] = "Twin"  # as the source reads them
        return [rows[:10], rows[10:]]

    with override_transport(wire):
        job = run_pages(customer, "from_dataverse", twins_on_two_pages)

    assert (job.inserted, job.failed, job.coupled) == (20, 0, 0), job.message
    couplings = Coupling.objects.filter(table_mapping=customer)
    assert couplings.count() == 20 and couplings.filter(pending=False).count() == 20
    assert len(set(couplings.values_list("bc_id", flat=True))) == 20  # each account its own customer
    assert rows_in("business_central", "customers") == 20
