import django_rq
import pytest
import rq

from tests.jobs.conftest import sandbox_connections  # noqa: F401  (the seeded sandbox and its two connections)


@pytest.fixture
def rq_worker_with_scheduler(redis_url):
    """Run every queued job, and the scheduled ones that are due (the debounced flushes), in this process."""

    def run() -> rq.Worker:
        worker = django_rq.get_worker("high", "default", "low", worker_class=rq.SimpleWorker)
        worker.work(burst=True, with_scheduler=True)
        return worker

    return run


@pytest.fixture
def sandbox_webhooks(sandbox_http):
    """The sandbox delivers its webhook calls (handshakes, notifications) to this process's app, in-process."""
    from sandbox import webhooks

    previous = webhooks.transport
    webhooks.transport = sandbox_http
    yield
    webhooks.transport = previous


@pytest.fixture(autouse=True)
def _keep_the_test_connections_open_across_in_process_requests():
    """Django closes "obsolete" connections when a request starts and ends; in a test transaction (autocommit off)
    that closes the test's own PostgreSQL connection under it. Django's test client disconnects these handlers; the
    in-process WSGI app behind httpx.WSGITransport does not, so do it here."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
