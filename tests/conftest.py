"""Shared fixtures: a real Redis for every test run, the sandbox over in-process HTTP, a burst RQ worker.

The suite runs on a fresh machine (SQLite, embedded Redis) and in CI (DATABASE_URL/REDIS_URL pointing at PostgreSQL
and Redis). settings.py gives every pytest run a throwaway data folder (SYNCADMIN_DATA_DIR).

`admin_user`, `admin_client` (logged in), `client`, `settings` and `live_server` come from pytest-django.
"""

import contextlib
import os
import signal
import threading
import uuid
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import django_rq
import httpx
import pytest
import redis
import rq
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.test import TransactionTestCase
from playwright.sync_api import sync_playwright

from connectors.http import override_transport
from syncadmin.management import embedded_redis

# With a shared Redis (REDIS_URL), a test run claims one of these databases, so that two runs on one machine (a
# developer's and CI's, say) never empty each other's queues; it empties its database after each test.
TEST_REDIS_DBS = range(15, 7, -1)
CLAIM_KEY = "syncadmin:test-run"
CLAIM_SECONDS = 3600  # renewed after every test; outlives a killed run only this long

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_MISSING = (
    f"The browser tests need Chromium at {CHROMIUM}: install it with `sudo apt-get install chromium` "
    "(Debian/Ubuntu), then run the tests again."
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _with_redis_db(url: str, db: int) -> str:
    parts = urlparse(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return urlunparse(parts._replace(query=urlencode(query)))
    return urlunparse(parts._replace(path=f"/{db}"))


class RedisForTests:
    """The test run's Redis database: emptied between tests, keeping only this run's claim on it."""

    def __init__(self, url: str, claim: str | None = None):
        self.url = url
        self.claim = claim
        self.connection = redis.Redis.from_url(url)

    @classmethod
    def claim_one_of(cls, base_url: str) -> "RedisForTests":
        claim = uuid.uuid4().hex
        for db in TEST_REDIS_DBS:
            url = _with_redis_db(base_url, db)
            with redis.Redis.from_url(url) as connection:
                if connection.set(CLAIM_KEY, claim, nx=True, ex=CLAIM_SECONDS):
                    return cls(url, claim)
        raise RuntimeError(
            f"Redis databases {TEST_REDIS_DBS.stop + 1}-{TEST_REDIS_DBS.start} of REDIS_URL are all in use by other "
            f"test runs (key {CLAIM_KEY}); wait for them, or unset REDIS_URL to use an embedded Redis."
        )

    def empty(self) -> None:
        with self.connection.pipeline(transaction=True) as pipeline:  # no instant where another run could claim it
            pipeline.flushdb()
            if self.claim:
                pipeline.set(CLAIM_KEY, self.claim, ex=CLAIM_SECONDS)
            pipeline.execute()

    def release(self) -> None:
        self.connection.flushdb()
        self.connection.close()


@pytest.fixture(scope="session")
def redis_for_tests():
    """The Redis the tests use: a claimed database of REDIS_URL if it is set, else an embedded one on a temp socket."""
    server = None
    if os.environ.get("REDIS_URL"):
        redis_for_tests = RedisForTests.claim_one_of(os.environ["REDIS_URL"])
    else:
        socket_path = settings.EMBEDDED_REDIS_SOCKET  # inside the run's temporary data folder
        server = embedded_redis.start(socket_path=socket_path, data_dir=settings.DATA_DIR, persist=False)
        redis_for_tests = RedisForTests(f"unix://{socket_path}")
    redis_for_tests.empty()
    try:
        yield redis_for_tests
    finally:
        redis_for_tests.release()
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="session", autouse=True)
def redis_url(redis_for_tests):
    """The test Redis's URL, which settings (REDIS_URL, RQ_QUEUES) and processes the tests start all use."""
    url = redis_for_tests.url
    previous = settings.REDIS_URL, settings.RQ_QUEUES, os.environ.get("REDIS_URL")
    settings.REDIS_URL = url
    settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    os.environ["REDIS_URL"] = url  # processes the tests start (serve, workers) use the same Redis
    try:
        yield url
    finally:
        settings.REDIS_URL, settings.RQ_QUEUES = previous[0], previous[1]
        if previous[2] is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = previous[2]


@pytest.fixture(autouse=True)
def _empty_redis_after_test(redis_for_tests, redis_url):
    """No queued job, lock or cron entry of one test leaks into the next."""
    yield
    redis_for_tests.empty()


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """No test leaves its signal handlers behind: an RQ worker run in this process installs its own for SIGINT and
    SIGTERM and keeps them after it has finished; a later signal (Ctrl-C included) would then raise its StopRequested
    inside whatever test runs at that moment instead of stopping pytest."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in handlers.items():
        signal.signal(number, handler)


@pytest.fixture
def redis_connection(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture(scope="session", autouse=True)
def _transactional_tests_leave_the_migrated_state():
    """Every test starts from the migrated state: content types, permissions, the default mappings and schedules.

    A transactional test (live server, threads, `transaction=True`) empties every table when it ends, and with
    `serialized_rollback` it does not even re-create the content types and permissions. The tests after it would then
    start from an empty database, or not, depending on the order they run in (`--random-order`), and Django's
    content type cache would still hold the ids of rows that are gone (a FOREIGN KEY error on the next admin save).
    So each transactional test puts back, once it has emptied the tables, exactly what the migrations left: the
    snapshot Django takes for serialized rollback, taken here before the first transactional test if Django did not.
    """
    original_setup = TransactionTestCase.__dict__["_fixture_setup"].__func__
    original_teardown = TransactionTestCase._fixture_teardown

    def fixture_setup(cls):
        # Before the first transactional test nothing has changed the tables (every other test rolled back).
        for alias in cls._databases_names(include_mirrors=False):
            connection = connections[alias]
            if not hasattr(connection, "_test_serialized_contents"):
                connection._test_serialized_contents = connection.creation.serialize_db_to_string()
        original_setup(cls)

    def fixture_teardown(self):
        original_teardown(self)
        for alias in self._databases_names(include_mirrors=False):
            # Empty again without post_migrate (a plain flush re-creates content types under new ids), then reload.
            call_command(
                "flush",
                database=alias,
                interactive=False,
                reset_sequences=False,
                inhibit_post_migrate=True,
                verbosity=0,
            )
            connections[alias].creation.deserialize_db_from_string(connections[alias]._test_serialized_contents)
        ContentType.objects.clear_cache()  # it may hold content types created and flushed during the test

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_setup", classmethod(fixture_setup))
        patch.setattr(TransactionTestCase, "_fixture_teardown", fixture_teardown)
        yield


@pytest.fixture(autouse=True)
def _keep_test_connections_open(monkeypatch):
    """No in-process request closes the test's own database connection.

    Django closes "obsolete" connections when a request starts and ends, and inside a test transaction (autocommit
    off) it finds the test's own connection obsolete: on PostgreSQL the test then loses its transaction and its data
    ("the connection is closed"; SQLite's in-memory test database hides it). Django's test client guards only its own
    requests, not one that reaches the project's WSGI app through httpx.WSGITransport (the sandbox, webhook receivers)
    however the test builds that transport.
    """
    from django.db.backends.base.base import BaseDatabaseWrapper

    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", lambda self: None)


@pytest.fixture
def sandbox_http():
    """Route every connector client through the sandbox in this process (real HTTP semantics, no socket).

    Returns the transport. Tests that touch the sandbox's data also need
    `@pytest.mark.django_db(databases=["default", "sandbox"])`.
    """
    app = _keeping_test_connections(get_wsgi_application())
    transport = httpx.WSGITransport(app=app)
    with override_transport(transport), app.shared_with_other_threads():
        yield transport


def _keeping_test_connections(handler):
    """The WSGI app, called so that it leaves the test's database connections open.

    Django closes "obsolete" connections when a request starts and ends; inside a test transaction on PostgreSQL
    that closes the test's own connection ("the connection is closed"). Django's test client switches this off for
    its requests; an in-process sandbox request goes through a plain WSGIHandler, so do the same here.
    """
    from django.core import signals
    from django.db import close_old_connections

    # The engine sends from threads too (parallel writes, the next page read ahead). The test's data lives in the
    # test thread's transaction (and in SQLite's in-memory database), so a request from another thread uses the test
    # thread's connections, as Django's live server does, one request at a time.
    owner = threading.get_ident()
    shared = {alias: connections[alias] for alias in connections}
    one_at_a_time = threading.RLock()

    def app(environ, start_response):
        with one_at_a_time, _connections_of_the_test(owner, shared):
            return _serve(environ, start_response)

    def one_query_at_a_time(execute, sql, params, many, context):
        with one_at_a_time:  # the test thread's own queries wait while another thread's request is served
            return execute(sql, params, many, context)

    @contextlib.contextmanager
    def shared_with_other_threads():
        for connection in shared.values():
            connection.execute_wrappers.append(one_query_at_a_time)
        try:
            yield
        finally:
            for connection in shared.values():
                connection.execute_wrappers.remove(one_query_at_a_time)

    app.shared_with_other_threads = shared_with_other_threads

    @contextlib.contextmanager
    def on_the_test_connections():
        """For a test's own code run on an engine thread (a writer thread, say) that touches the database: as a
        request of this app does, on the test thread's connections, one at a time."""
        with one_at_a_time, _connections_of_the_test(owner, shared):
            yield

    app.on_the_test_connections = on_the_test_connections

    def _serve(environ, start_response):
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            result = handler(environ, start_response)
            try:
                body = b"".join(result)  # an injected fault raises here, as a real dropped connection would
            finally:
                result.close()  # sends request_finished now, while the handlers are off
            return [body]
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)

    return app


@contextlib.contextmanager
def _connections_of_the_test(owner, shared):
    if threading.get_ident() == owner:
        yield
        return
    for alias, connection in shared.items():
        connection.inc_thread_sharing()
        connections[alias] = connection
    try:
        yield
    finally:
        for alias, connection in shared.items():
            del connections[alias]
            connection.dec_thread_sharing()


@pytest.fixture
def rq_worker(redis_url):
    """A callable that runs every queued job (high, default, low) in this process, then returns the worker.

    Jobs are enqueued after the database commit (RQ COMMIT_MODE on_db_commit): in a test wrapped in a transaction,
    enqueue inside `django_capture_on_commit_callbacks(execute=True)` or use `django_db(transaction=True)`.
    """

    def run_queued_jobs() -> rq.Worker:
        worker = django_rq.get_worker("high", "default", "low", worker_class=rq.SimpleWorker)
        worker.work(burst=True)
        return worker

    return run_queued_jobs


def sandbox_connection_pair(base_url: str, *, page_size: int = 50):
    """Seed a small sandbox and point one connection per system at it.

    `base_url` is http://testserver (in-process, with `sandbox_http`) or a live server's URL (a real socket).
    """
    from connectors.choices import ConnectionKind
    from connectors.models import Connection
    from sandbox import services as sandbox_services

    sandbox_services.seed_demo(customers=12, accounts=8, shared=3)
    secret = f"tests-{uuid.uuid4().hex}"
    sandbox_services.register_client(client_id="syncadmin-tests", client_secret=secret)
    tenant = sandbox_services.DEMO_TENANT
    common = {
        "tenant": tenant,
        "client_id": "syncadmin-tests",
        "token_url": f"{base_url}/sandbox/oauth/{tenant}/oauth2/v2.0/token",
        "page_size": page_size,
    }
    bc = Connection(
        kind=ConnectionKind.BUSINESS_CENTRAL,
        name="Sandbox Business Central",
        environment_url=f"{base_url}/sandbox/bc",
        bc_environment=sandbox_services.DEMO_ENVIRONMENT,
        bc_company_id=sandbox_services.demo_company_id(),
        **common,
    )
    dataverse = Connection(
        kind=ConnectionKind.DATAVERSE,
        name="Sandbox Dataverse",
        environment_url=f"{base_url}/sandbox/dataverse",
        **common,
    )
    for connection in (bc, dataverse):
        connection.set_client_secret(secret)
        connection.save()
    return bc, dataverse


@pytest.fixture
def make_sandbox_connections():
    """`sandbox_connection_pair` for test folders (conftest modules cannot import each other)."""
    return sandbox_connection_pair


@pytest.fixture
def sandbox_connections(sandbox_http):
    """Seeded sandbox and the two connections pointing at it, reached in-process over HTTP."""
    return sandbox_connection_pair("http://testserver")


@pytest.fixture
def live_sandbox_connections(live_server):
    """Seeded sandbox and the two connections pointing at it, served by the live server over a real socket."""
    return sandbox_connection_pair(live_server.url)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium for every browser test of the run (tests/browser, tests/mappings), started on first use.

    One for the session: Playwright's sync API allows one running instance per thread, so two fixtures each with
    their own would fail in whichever order they meet. Without Chromium the browser tests fail, with the command
    that installs it, rather than being skipped unnoticed.
    """
    if not os.path.exists(CHROMIUM):
        pytest.fail(CHROMIUM_MISSING, pytrace=False)
    # Playwright's sync API runs an event loop in this thread; the tests' own ORM calls are still synchronous.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
