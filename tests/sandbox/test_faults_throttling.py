"""Fault injection (the next N requests fail with 429, 503, a timeout or a dropped connection; latency) and the
services' throttling: per-client sliding window and concurrency cap, 429 with Retry-After and documented bodies."""

import time

import httpx
import pytest

from sandbox import testing

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def test_next_n_requests_get_429_with_retry_after(bc, dv, company_id):
    testing.inject_faults("429", 2, service="dataverse", retry_after=7)
    assert bc.get("companies").status_code == 200  # other service unaffected
    for _ in range(2):
        response = dv.get("accounts")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"]["code"] == "0x80072322"
        assert response.json()["error"]["message"].startswith("Number of requests exceeded the limit of 6000")
    assert dv.get("accounts").status_code == 200


def test_503_in_each_envelope_and_any_service(bc, dv, company_id):
    testing.inject_faults("503", 2, retry_after=3)
    first, second = bc.get("companies"), dv.get("accounts")
    assert first.status_code == second.status_code == 503
    assert first.headers["Retry-After"] == "3"
    assert "CorrelationId" in first.json()["error"]["message"]
    assert "error" in second.json()
    assert bc.get("companies").status_code == 200


def test_dropped_connection_and_timeout_reach_the_client_as_transport_errors(bc, company_id):
    testing.inject_faults("drop", 1, service="bc")
    with pytest.raises(httpx.RemoteProtocolError):
        bc.get("companies")
    testing.inject_faults("timeout", 1, service="bc")
    with pytest.raises(httpx.TimeoutException):
        bc.get("companies")
    assert bc.get("companies").status_code == 200


def test_latency_delays_the_answer(bc, company_id):
    testing.inject_faults("latency", 1, service="bc", seconds=0.3)
    started = time.monotonic()
    assert bc.get("companies").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    bc.get("companies")
    assert time.monotonic() - started < 0.3


def test_clear_faults(bc, company_id):
    testing.inject_faults("503", 5)
    testing.clear_faults()
    assert bc.get("companies").status_code == 200


def test_sliding_window_throttles_per_client(bc, dv, company_id):
    testing.set_throttle(limit=3, window_seconds=60, retry_after=9)
    assert [dv.get("accounts", params={"$top": 1}).status_code for _ in range(3)] == [200, 200, 200]
    throttled = dv.get("accounts")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "9"
    assert throttled.json()["error"]["message"] == (
        "Number of requests exceeded the limit of 3 over time window of 60 seconds."
    )
    assert bc.get("companies").status_code == 200  # BC keeps its own count
    testing.set_throttle(enabled=False)
    assert dv.get("accounts", params={"$top": 1}).status_code == 200


def test_concurrency_cap_trips_immediately(dv, company_id):
    """A request arriving while the client already has `concurrency` requests in flight is refused at once."""
    from sandbox import faults

    testing.set_throttle(limit=1000, concurrency=1, retry_after=2)
    with faults.concurrency_slot("dataverse", "11111111-2222-3333-4444-555555555555", faults.throttle_settings()):
        started = time.monotonic()
        blocked = dv.get("accounts", params={"$top": 1})
        assert time.monotonic() - started < 1
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "0x80072326"
    assert blocked.json()["error"]["message"] == "Number of concurrent requests exceeded the limit of 1."
    assert blocked.headers["Retry-After"] == "2"
    assert dv.get("accounts", params={"$top": 1}).status_code == 200
