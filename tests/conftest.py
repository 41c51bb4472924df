"""Shared fixtures: a real Redis for every test run, the sandbox over in-process HTTP, a burst RQ worker.

The suite runs on a fresh machine (SQLite, embedded Redis) and in CI (DATABASE_URL/REDIS_URL pointing at PostgreSQL
and Redis). settings.py gives every pytest run a throwaway data folder (SYNCADMIN_DATA_DIR).

`admin_user`, `admin_client` (logged in), `client`, `settings` and `live_server` come from pytest-django.
"""

import os
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import django_rq
import httpx
import pytest
import redis
import rq
from django.conf import settings
from django.core.wsgi import get_wsgi_application

from connectors.http import override_transport
from syncadmin.management import embedded_redis

# With a shared Redis (REDIS_URL), the tests use this database of it and empty it after each test.
TEST_REDIS_DB = 15


def _with_redis_db(url: str, db: int) -> str:
    parts = urlparse(url)
    if parts.scheme == "unix":
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return urlunparse(parts._replace(query=urlencode(query)))
    return urlunparse(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="session", autouse=True)
def redis_url():
    """The Redis the tests use: REDIS_URL's database 15 if REDIS_URL is set, else an embedded one on a temp socket."""
    server = None
    if os.environ.get("REDIS_URL"):
        url = _with_redis_db(os.environ["REDIS_URL"], TEST_REDIS_DB)
    else:
        socket_path = settings.EMBEDDED_REDIS_SOCKET  # inside the run's temporary data folder
        server = embedded_redis.start(socket_path=socket_path, data_dir=settings.DATA_DIR, persist=False)
        url = f"unix://{socket_path}"
    previous = settings.REDIS_URL, settings.RQ_QUEUES, os.environ.get("REDIS_URL")
    settings.REDIS_URL = url
    settings.RQ_QUEUES = {name: {**config, "URL": url} for name, config in settings.RQ_QUEUES.items()}
    os.environ["REDIS_URL"] = url  # processes the tests start (serve, workers) use the same Redis
    connection = redis.Redis.from_url(url)
    connection.flushdb()
    try:
        yield url
    finally:
        connection.flushdb()
        connection.close()
        settings.REDIS_URL, settings.RQ_QUEUES = previous[0], previous[1]
        if previous[2] is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = previous[2]
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(autouse=True)
def _empty_redis_after_test(redis_url):
    """No queued job, lock or cron entry of one test leaks into the next."""
    yield
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    connection.close()


@pytest.fixture
def redis_connection(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


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
    transport = httpx.WSGITransport(app=_keeping_test_connections(get_wsgi_application()))
    with override_transport(transport):
        yield transport


def _keeping_test_connections(handler):
    """The WSGI app, called so that it leaves the test's database connections open.

    Django closes "obsolete" connections when a request starts and ends; inside a test transaction on PostgreSQL
    that closes the test's own connection ("the connection is closed"). Django's test client switches this off for
    its requests; an in-process sandbox request goes through a plain WSGIHandler, so do the same here.
    """
    from django.core import signals
    from django.db import close_old_connections

    def app(environ, start_response):
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
