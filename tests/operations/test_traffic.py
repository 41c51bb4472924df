"""Requests to the services are counted per connection and minute in Redis, through the connectors' observer hook."""

import time

import pytest
import redis

from connectors import observers, resilience
from connectors.auth import clear_token_cache
from connectors.clients import open_client
from connectors.types import ConnectorError
from operations import traffic

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    clear_token_cache()
    monkeypatch.setattr(resilience, "sleep", lambda seconds: None)  # retries without waiting
    monkeypatch.setattr(traffic, "_paused_until", 0.0)
    yield
    clear_token_cache()


def counts_of(connection):
    return traffic.traffic_read([(connection.pk, connection.kind)])[connection.pk]


def test_the_recorder_is_registered_when_the_app_starts():
    assert traffic.record in observers.observers


def test_every_request_through_the_sandbox_is_counted_on_its_connection(sandbox_connections, redis_connection):
    bc, dataverse = sandbox_connections
    with open_client(bc) as client:
        rows = [row for page in client.read_pages("customers", page_size=5) for row in page.rows]
        client_counts = dict(client.request_counts)

    bc_counts = counts_of(bc)
    assert len(rows) == 12
    # The token request goes to the token endpoint, not to the service: not counted against its limit.
    assert bc_counts.requests_in_window == bc_counts.requests_last_hour == client_counts["read"] == 3
    assert (bc_counts.throttled_last_hour, bc_counts.retries_last_hour, bc_counts.token_failures_last_hour) == (0, 0, 0)
    assert bc_counts.limit == 6000
    assert counts_of(dataverse).requests_last_hour == 0
    assert redis_connection.keys(f"{traffic.KEY_PREFIX}:{bc.pk}:*")  # one hash per minute, not a row per request


def test_throttled_answers_and_retries_are_counted(sandbox_connections):
    from sandbox import testing

    _, dataverse = sandbox_connections
    with open_client(dataverse) as client:
        client.count("accounts")  # the token first, so the faults hit the API request
        testing.inject_faults("429", 2, retry_after=1)
        client.count("accounts")
    testing.clear_faults()

    counts = counts_of(dataverse)
    assert counts.requests_last_hour == 1 + 3  # the first count, then two throttled attempts and the one that passed
    assert counts.throttled_last_hour == 2
    assert counts.retries_last_hour == 2


def test_a_token_that_cannot_be_obtained_is_counted_as_a_token_failure(sandbox_connections):
    bc, _ = sandbox_connections
    bc.set_client_secret("not-the-secret")
    bc.save()
    with open_client(bc) as client, pytest.raises(ConnectorError):
        client.count("customers")

    counts = counts_of(bc)
    assert counts.token_failures_last_hour == 1
    assert counts.requests_last_hour == 0


def test_the_window_holds_the_last_five_minutes_and_the_hour_the_last_sixty(redis_connection):
    now = time.time()
    minute = int(now // 60)
    for minutes_ago, requests in [(0, 3), (4, 5), (5, 7), (59, 11), (60, 13)]:
        redis_connection.hset(traffic._key(42, minute - minutes_ago), "requests", requests)

    counts = traffic.traffic_read([(42, "dataverse")], now=now)[42]

    assert counts.requests_in_window == 3 + 5
    assert counts.requests_last_hour == 3 + 5 + 7 + 11


def test_without_redis_a_request_still_succeeds_and_the_failure_is_logged_once(
    sandbox_connections, monkeypatch, caplog
):
    class Unreachable:
        def pipeline(self, **kwargs):
            raise redis.ConnectionError("no Redis here")

    monkeypatch.setattr(traffic, "redis_client", Unreachable)
    monkeypatch.setattr(traffic, "_failure_logged", False)
    bc, _ = sandbox_connections
    with open_client(bc) as client:
        assert len([row for page in client.read_pages("customers", page_size=5) for row in page.rows]) == 12

    warnings = [r for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(warnings) == 1
    assert traffic._paused_until > time.monotonic()  # skips recording for a while instead of failing every request
    assert traffic.traffic_read([(bc.pk, bc.kind)]) is None


def test_a_stuck_redis_holds_a_request_a_second_at_most():
    kwargs = traffic.redis_client().connection_pool.connection_kwargs

    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == traffic.REDIS_TIMEOUT_SECONDS == 1.0
