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
def _keep_the_test_connections_open_across_in_process_requests(monkeypatch):
    """Django closes "obsolete" connections when a request starts and ends; in a test transaction (autocommit off)
    that closes the test's own PostgreSQL connection under it. Django's test client guards only its own request;
    the in-process WSGI app behind httpx.WSGITransport (the sandbox, our receivers) is not guarded, so no connection
    is closed that way during these tests."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    monkeypatch.setattr(BaseDatabaseWrapper, "close_if_unusable_or_obsolete", lambda self: None)
