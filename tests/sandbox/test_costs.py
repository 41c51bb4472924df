"""The cost profile (sandbox.costs): the emulated services take the time the real ones take and refuse what they
refuse, through real HTTP (in-process WSGI transport).

The limits are Microsoft's:
- Dataverse service protection, per user and web server, 5-minute sliding window: 6,000 requests, 1,200 s of
  combined execution time, 52 concurrent requests; 429 with Retry-After and 0x80072322 / 0x80072321 / 0x80072326.
  https://learn.microsoft.com/power-apps/developer/data-platform/api-limits
- `x-ms-dop-hint` on Dataverse answers:
  https://learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests
- Business Central per user: 6,000 requests / 5 min, 5 processed at once, 95 queued, then 429; queued past the
  8-minute operation timeout: 503.
  https://learn.microsoft.com/dynamics365/business-central/dev-itpro/administration/operational-limits-online

Tests shrink the limits (or the window, via time_scale) so they run in well under a second or two each.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest

from sandbox import costs, schema, testing
from sandbox.costs import CostProfile
from sandbox.models import row_model

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])
in_parallel = pytest.mark.django_db(databases=["default", "sandbox"], transaction=True)

ACCOUNT = "Microsoft.Dynamics.CRM.account"
# No time per record: only what a test sets costs time.
FREE = CostProfile(
    dataverse_seconds_per_request=0,
    dataverse_seconds_per_record_read=0,
    dataverse_seconds_per_record_written=0,
    dataverse_seconds_per_inner_request=0,
    bc_seconds_per_request=0,
    bc_seconds_per_record_read=0,
    bc_seconds_per_record_written=0,
)


@pytest.fixture
def profile():
    """Switch a profile on for the test (`profile(**changes)` on top of FREE); off again afterwards."""

    def switch_on(**changes):
        chosen = replace(FREE, **changes) if changes else FREE
        testing.set_cost_profile(chosen)
        return chosen

    yield switch_on
    testing.set_cost_profile(None)


def accounts_named(prefix: str) -> int:
    return (
        row_model(schema.table("dataverse", "accounts"))
        .objects.using("sandbox")
        .filter(name__startswith=prefix)
        .count()
    )


def parallel(calls):
    """Start every call at once (a barrier) and return their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_off_by_default_no_hint_no_limits(dv, seeded):
    assert costs.current() is None
    response = dv.get("accounts", params={"$top": 1})
    assert response.status_code == 200
    assert "x-ms-dop-hint" not in response.headers


def test_dataverse_refuses_beyond_the_request_limit_of_the_window(profile, dv, bc, seeded):
    """api-limits: "Number of requests exceeded the limit of 6000 over time window of 300 seconds." (0x80072322)."""
    profile(dataverse_request_limit=3, time_scale=0.01)  # a 3-second window
    assert [dv.get("accounts", params={"$top": 1}).status_code for _ in range(3)] == [200, 200, 200]
    refused = dv.post("accounts", json={"name": "Refused by the limit"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "0x80072322"
    assert (
        refused.json()["error"]["message"]
        == "Number of requests exceeded the limit of 3 over time window of 3 seconds."
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    assert refused.headers["x-ms-dop-hint"] == "4"
    assert accounts_named("Refused by the limit") == 0  # refused before anything was written
    assert bc.get("companies").status_code == 200  # Business Central counts its own requests


def test_the_window_slides(profile, dv, seeded):
    profile(dataverse_request_limit=2, time_scale=0.004)  # a 1.2-second window
    assert [dv.get("accounts", params={"$top": 1}).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.3)
    assert dv.get("accounts", params={"$top": 1}).status_code == 200


def test_execution_time_budget_counts_inner_batch_requests(profile, dv, seeded):
    """api-limits: combined execution time 1,200,000 ms per 300 s (0x80072321); a $batch does not avoid it: each
    inner request's time counts (protocols.md §1.12, §1.15)."""
    profile(
        time_scale=0.1,
        dataverse_execution_seconds=1.0,
        dataverse_seconds_per_request=0.1,
        dataverse_seconds_per_inner_request=0.3,
    )
    assert dv.get("accounts", params={"$top": 1}).status_code == 200  # 0.1 s of the 1 s budget
    parts = [
        "\r\n".join(
            [
                "--batch_A",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
                "GET accounts?$top=1 HTTP/1.1",
                "",
                "",
            ]
        )  # fmt: skip
        for _ in range(3)
    ]
    body = "\r\n".join([*parts, "--batch_A--", ""]).encode()
    batch = dv.post("$batch", content=body, headers={"Content-Type": 'multipart/mixed; boundary="batch_A"'})
    assert batch.status_code == 200  # 0.1 + 3 x 0.3 = 1.0 s more: the budget is used up
    refused = dv.post("accounts", json={"name": "Over the budget"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "0x80072321"
    assert refused.json()["error"]["message"].startswith(
        "Combined execution time of incoming requests exceeded limit of 100 milliseconds "
        "over time window of 30 seconds."
    )
    assert int(refused.headers["Retry-After"]) >= 1
    assert accounts_named("Over the budget") == 0


def test_a_request_takes_its_service_time_and_writes_cost_per_record(profile, dv, seeded):
    profile(time_scale=0.5, dataverse_seconds_per_request=0.2, dataverse_seconds_per_record_written=0.01)
    started = time.monotonic()
    assert dv.get("accounts", params={"$top": 1}).status_code == 200
    assert 0.1 <= time.monotonic() - started < 0.4  # 0.2 s scaled by 0.5
    targets = [{"@odata.type": ACCOUNT, "name": f"Costed {i}"} for i in range(60)]
    started = time.monotonic()
    assert dv.post("accounts/Microsoft.Dynamics.CRM.CreateMultiple", json={"Targets": targets}).status_code == 200
    assert 0.4 <= time.monotonic() - started < 0.8  # (0.2 + 60 x 0.01) x 0.5
    assert accounts_named("Costed ") == 60


@in_parallel
def test_concurrent_requests_overlap_instead_of_queueing(profile, dv, seeded):
    """The sandbox sleeps outside its database work: N parallel requests take about one request's time."""
    profile(time_scale=0.5, dataverse_seconds_per_request=1.0)
    started = time.monotonic()
    answers = parallel([lambda: dv.get("accounts", params={"$top": 1})] * 8)
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 8
    assert 0.5 <= elapsed < 1.0, elapsed  # one request takes 0.5 s; eight in a row would take 4 s


@in_parallel
def test_the_emulations_own_waiting_counts_within_the_service_time_not_on_top(profile, dv, seeded):
    """The real service's time per request includes its own processing. The emulator's (reading the request,
    checking the token, waiting for its one-at-a-time database turn while another request writes) must not add to
    it: else parallel requests would each take longer than the profile says, and the bench's ceiling would lie."""
    from sandbox import views

    profile(time_scale=1.0, dataverse_seconds_per_request=1.0)  # 1 s a request
    with ThreadPoolExecutor(1) as pool:
        with views._database_turn:  # another request's database work, 0.6 s of it
            answer = pool.submit(_timed, lambda: dv.get("accounts", params={"$top": 1}))
            time.sleep(0.6)
        response, seconds = answer.result()
    assert response.status_code == 200
    assert 0.95 <= seconds < 1.45, seconds  # 1 s, not 0.6 s of waiting + 1 s


@in_parallel
def test_dataverse_refuses_beyond_the_concurrency_limit_at_once(profile, dv, seeded):
    """api-limits: "Number of concurrent requests exceeded the limit of 52." trips immediately (0x80072326)."""
    profile(time_scale=0.5, dataverse_seconds_per_request=1.0, dataverse_concurrency=3)
    answers = parallel(
        [lambda i=i: _timed(lambda: dv.post("accounts", json={"name": f"Parallel {i}"})) for i in range(5)]
    )
    served = [a for a, _ in answers if a.status_code == 204]
    refused = [(a, seconds) for a, seconds in answers if a.status_code == 429]
    assert len(served) == 3 and len(refused) == 2
    for answer, seconds in refused:
        assert answer.json()["error"]["code"] == "0x80072326"
        assert answer.json()["error"]["message"] == "Number of concurrent requests exceeded the limit of 3."
        assert answer.headers["Retry-After"].isdigit()
        assert answer.headers["x-ms-dop-hint"] == "4"
        assert seconds < 0.4  # refused at once, not after waiting for a slot
    assert accounts_named("Parallel ") == 3


def _timed(call):
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


@in_parallel
def test_business_central_queues_beyond_five_and_refuses_beyond_the_queue(profile, bc, company_id):
    """operational-limits-online: 5 requests processed per user, more queued (95), then 429."""
    profile(time_scale=0.5, bc_seconds_per_request=1.0, bc_queue=2)
    answers = parallel([lambda: _timed(lambda: bc.get("companies"))] * 8)
    statuses = sorted(a.status_code for a, _ in answers)
    assert statuses == [200] * 7 + [429]
    times = sorted(seconds for a, seconds in answers if a.status_code == 200)
    assert all(0.45 <= s < 0.9 for s in times[:5]), times  # processed at once
    assert all(0.95 <= s < 1.5 for s in times[5:]), times  # queued behind them: the 6th and 7th waited a turn
    refused = next(a for a, _ in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "Application_TooManyRequests"
    assert refused.headers["Retry-After"].isdigit()
    assert "x-ms-dop-hint" not in refused.headers


@in_parallel
def test_business_central_cancels_a_request_queued_past_the_operation_timeout(profile, bc, company_id):
    """operational-limits-online: a request queued longer than the (8-minute) operation timeout gets 503."""
    profile(time_scale=0.001, bc_seconds_per_request=600, bc_concurrency=1, bc_operation_timeout_seconds=300)
    first, second = parallel([lambda: bc.get("companies"), lambda: (time.sleep(0.05), bc.get("companies"))[1]])
    assert first.status_code == 200  # 0.6 s
    assert second.status_code == 503  # waited 0.3 s for the only slot, then was cancelled
    assert "Retry-After" in second.headers


def test_dop_hint_on_every_dataverse_answer_not_on_business_central(profile, dv, bc, seeded):
    profile(dop_hint=7)
    assert dv.get("accounts", params={"$top": 1}).headers["x-ms-dop-hint"] == "7"
    assert dv.get("accounts(00000000-0000-0000-0000-000000000001)").headers["x-ms-dop-hint"] == "7"  # a 404 too
    assert "x-ms-dop-hint" not in bc.get("companies").headers


def _outcomes(dv, n):
    seen = []
    for _ in range(n):
        try:
            seen.append(str(dv.get("accounts", params={"$top": 1}).status_code))
        except httpx.TransportError as exc:
            seen.append(type(exc).__name__)
    return seen


def test_fault_share_fails_that_share_of_requests_the_same_way_for_a_seed(profile, dv, seeded):
    profile(fault_share=0.3, fault_seed=11, time_scale=0.001)
    first = _outcomes(dv, 60)
    profile(fault_share=0.3, fault_seed=11, time_scale=0.001)
    assert _outcomes(dv, 60) == first
    failed = [o for o in first if o != "200"]
    assert 8 <= len(failed) <= 28  # about 30 %
    assert {"429", "503", "ReadTimeout", "RemoteProtocolError"} <= set(failed)
    counted = costs.stats()["dataverse"]
    assert sum(n for k, n in counted.items() if k.startswith("fault:")) == len(failed)
    assert counted["served"] == 60 - len(failed)


def test_ceiling_of_the_default_profile():
    """The formula in costs.ceiling, worked by hand for the default profile."""
    to_dataverse = costs.ceiling(costs.DEFAULT, "to_dataverse")
    t_w = 0.05 + 1000 * 0.004  # one UpsertMultiple of 1,000
    assert to_dataverse.bounds["Dataverse requests per window"] == pytest.approx(6000 / 300 * 1000)
    assert to_dataverse.bounds["Dataverse execution time"] == pytest.approx(1200 / 300 * 1000 / t_w)
    assert to_dataverse.bounds["Dataverse concurrency (DOP hint)"] == pytest.approx(4 * 1000 / t_w)
    assert to_dataverse.records_per_second == pytest.approx(4 * 1000 / t_w)
    assert costs.ceiling(costs.DEFAULT, "to_dataverse", users=2).records_per_second == pytest.approx(
        2 * to_dataverse.records_per_second
    )
    to_bc = costs.ceiling(costs.DEFAULT, "to_bc")
    assert to_bc.records_per_second == pytest.approx(5 * 100 / (0.1 + 100 * 0.04))
    assert to_bc.bound_by == "BC concurrency"
