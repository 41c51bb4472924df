"""Faults injected into the sandbox: retried with backoff, Retry-After honoured, no record lost or duplicated."""

import time
import uuid

import pytest

from connectors.clients import open_client
from connectors.resilience import RetryPolicy
from connectors.types import ConnectorError, ErrorKind, WriteOperation

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def ids_of(client, entity_set):
    key = client.primary_key(entity_set)
    return [row[key] for page in client.read_pages(entity_set) for row in page.rows]


@pytest.mark.parametrize("fixture", ["bc_connection", "dataverse_connection"])
@pytest.mark.parametrize("fault", ["429", "503"])
def test_throttling_and_outages_are_retried_after_the_retry_after_delay(request, sleeps, fixture, fault):
    from sandbox import testing

    connection = request.getfixturevalue(fixture)
    entity_set = "customers" if fixture == "bc_connection" else "accounts"
    with open_client(connection) as client:
        testing.inject_faults(fault, 2, retry_after=3)
        rows = ids_of(client, entity_set)

    assert len(rows) == 12
    assert sleeps == [3.0, 3.0]  # exactly what Retry-After said, twice
    assert client.request_counts["retry"] == 2 and client.request_counts["read"] == 3
    if fault == "429":
        # Fewer requests at once; the batches keep their size (a 429 is about requests, not their size).
        assert client.throttle.concurrency < client.throttle.max_concurrency or client.throttle.max_concurrency == 1
    assert client.throttle.batch_size == client.throttle.max_batch_size


@pytest.mark.parametrize("fault", ["timeout", "drop"])
def test_timeouts_and_dropped_connections_on_reads_are_retried_with_backoff(bc_connection, sleeps, fault):
    from sandbox import testing

    with open_client(bc_connection) as client:
        testing.inject_faults(fault, 2)
        rows = ids_of(client, "customers")

    assert len(rows) == 12
    assert len(sleeps) == 2 and 0 < sleeps[0] <= sleeps[1] * 2  # jittered exponential backoff
    assert client.request_counts["retry"] == 2


def test_the_total_wait_is_bounded_and_then_the_call_fails_as_throttled(bc_connection, sleeps):
    from sandbox import testing

    policy = RetryPolicy(max_attempts=10, max_total_wait=10)
    with open_client(bc_connection, retry_policy=policy) as client:
        client.tokens.token()
        testing.inject_faults("429", 20, retry_after=4)
        with pytest.raises(ConnectorError) as caught:
            ids_of(client, "customers")
    assert caught.value.kind == ErrorKind.THROTTLED and caught.value.status == 429
    assert sum(sleeps) <= 10 and sleeps == [4.0, 4.0]


@pytest.mark.parametrize("fault", ["drop", "timeout", "503", "429"])
def test_bc_creates_survive_faults_without_losing_or_duplicating_a_record(bc_connection, sleeps, fault):
    from sandbox import testing

    operations = [
        WriteOperation("create", "customers", str(i), {"number": f"FLT{i:03d}", "displayName": f"Fault {i}"})
        for i in range(5)
    ]
    with open_client(bc_connection) as client:
        client.tokens.token()
        testing.inject_faults(fault, 1, retry_after=1)
        results = client.write_many(operations)
        numbers = [
            row["number"]
            for page in client.read_pages("customers", filter="startswith(number,'FLT')")
            for row in page.rows
        ]

    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert sorted(numbers) == [f"FLT{i:03d}" for i in range(5)]  # each exactly once
    assert client.request_counts["retry"] + client.request_counts["batch"] >= 2


@pytest.mark.parametrize("fault", ["drop", "timeout", "503", "429"])
def test_dataverse_upserts_survive_faults_without_losing_or_duplicating_a_record(dataverse_connection, sleeps, fault):
    from sandbox import testing

    ids = [uuid.uuid4() for _ in range(5)]
    operations = [WriteOperation("upsert", "accounts", str(i), {"name": f"Fault {i}"}, ids[i]) for i in range(5)]
    with open_client(dataverse_connection) as client:
        client.tokens.token()
        testing.inject_faults(fault, 1, retry_after=1)
        results = client.write_many(operations)
        total = client.count("accounts")
        stored = client.read_by_ids("accounts", ids)

    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert total == 12 + 5 and set(stored) == set(ids)


@pytest.mark.parametrize("fault", ["drop", "timeout"])
def test_bc_updates_whose_outcome_is_unknown_are_checked_before_resending(bc_connection, sleeps, fault):
    from sandbox import testing

    with open_client(bc_connection) as client:
        rows = [row for page in client.read_pages("customers") for row in page.rows][:3]
        operations = [
            WriteOperation(
                "update", "customers", r["id"], {"displayName": f"Safe {i}"}, uuid.UUID(r["id"]), r["@odata.etag"]
            )
            for i, r in enumerate(rows)
        ]
        testing.inject_faults(fault, 1)
        results = client.write_many(operations)
        stored = client.read_by_ids("customers", [uuid.UUID(r["id"]) for r in rows])

    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [stored[uuid.UUID(r["id"])]["displayName"] for r in rows] == ["Safe 0", "Safe 1", "Safe 2"]
    assert all(result.etag == stored[result.record_id]["@odata.etag"] for result in results)


@pytest.mark.parametrize("fault", ["drop", "timeout"])
def test_dataverse_updates_and_deletes_whose_outcome_is_unknown_are_checked_before_resending(
    dataverse_connection, sleeps, fault
):
    from sandbox import testing

    with open_client(dataverse_connection) as client:
        rows = [row for page in client.read_pages("accounts") for row in page.rows][:3]
        ids = [uuid.UUID(r["accountid"]) for r in rows]
        operations = [
            WriteOperation("update", "accounts", "a", {"name": "Safe A"}, ids[0], rows[0]["@odata.etag"]),
            WriteOperation("update", "accounts", "b", {"name": "Safe B"}, ids[1], None),
            WriteOperation("delete", "accounts", "c", record_id=ids[2], etag=rows[2]["@odata.etag"]),
        ]
        testing.inject_faults(fault, 1)
        results = client.write_many(operations)
        stored = client.read_by_ids("accounts", ids)

    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert stored[ids[0]]["name"] == "Safe A" and stored[ids[1]]["name"] == "Safe B" and ids[2] not in stored
    assert results[0].etag == stored[ids[0]]["@odata.etag"]


def test_an_expired_token_is_renewed_once_on_a_401(bc_connection):
    from sandbox import testing

    with open_client(bc_connection) as client:
        first = ids_of(client, "customers")
        testing.expire_tokens()
        second = ids_of(client, "customers")
    assert first == second
    assert client.request_counts["token"] == 2


def test_a_token_is_renewed_before_it_expires(bc_connection):
    from sandbox import testing

    testing.set_token_lifetime(3)  # renewed after 2.4 s (a fifth of the lifetime before expiry)
    with open_client(bc_connection) as client:
        ids_of(client, "customers")
        time.sleep(2.6)
        ids_of(client, "customers")
        ids_of(client, "customers")
    assert client.request_counts["token"] == 2


def test_one_token_per_scope_is_shared_by_every_client_of_the_process(bc_connection, dataverse_connection):
    with open_client(bc_connection) as first, open_client(bc_connection) as second:
        ids_of(first, "customers")
        ids_of(second, "customers")
    with open_client(dataverse_connection) as dataverse:
        ids_of(dataverse, "accounts")  # another scope: its own token
    assert first.request_counts["token"] == 1 and second.request_counts["token"] == 0
    assert dataverse.request_counts["token"] == 1


def test_bad_credentials_are_an_authentication_error(sandbox_connection):
    connection = sandbox_connection("business_central", client_secret="not-the-secret")
    with open_client(connection) as client, pytest.raises(ConnectorError) as caught:
        ids_of(client, "customers")
    assert caught.value.kind == ErrorKind.AUTHENTICATION
    assert "Bad credentials" in caught.value.message
    assert "not-the-secret" not in str(caught.value) + caught.value.detail()


def test_under_the_services_rate_limit_a_bulk_write_completes_with_fewer_requests_at_once(
    sandbox_connection, monkeypatch
):
    """The sandbox's sliding window (2 requests a minute) answers 429 with Retry-After; nothing is lost."""
    from connectors import resilience
    from sandbox import testing

    waited = []

    def wait(seconds):  # the window moves on while we wait: lift the limit instead of sleeping a minute
        waited.append(seconds)
        testing.set_throttle(enabled=False)

    monkeypatch.setattr(resilience, "sleep", wait)
    connection = sandbox_connection("business_central", batch_size=40)
    operations = [WriteOperation("create", "customers", str(i), {"displayName": f"Limited {i}"}) for i in range(120)]
    with open_client(connection) as client:
        client.tokens.token()
        testing.set_throttle(limit=2, window_seconds=60, retry_after=5)
        results = client.write_many(operations)
        total = client.count("customers")

    assert all(r.ok for r in results) and total == 12 + 120
    assert waited == [5.0] and client.request_counts["retry"] == 1
    assert client.throttle.concurrency == 2  # halved on the 429...
    assert client.throttle.batch_size == 40  # ...which leaves the batches as they were


@pytest.mark.parametrize("fixture", ["bc_connection", "dataverse_connection"])
def test_once_throttling_outlasts_the_budget_the_rest_of_the_write_fails_at_once(request, sleeps, fixture):
    from sandbox import testing

    connection = request.getfixturevalue(fixture)
    connection.batch_size = 10
    entity_set = "customers" if fixture == "bc_connection" else "accounts"
    name = "displayName" if fixture == "bc_connection" else "name"
    operations = [WriteOperation("create", entity_set, str(i), {name: f"Never {i}"}) for i in range(30)]
    with open_client(connection, retry_policy=RetryPolicy(max_attempts=10, max_total_wait=10)) as client:
        client.tokens.token()
        testing.inject_faults("429", 100, retry_after=4)
        results = client.write_many(operations)
        testing.clear_faults()
        total = client.count(entity_set)

    assert [r.error.kind for r in results] == [ErrorKind.THROTTLED] * 30
    assert sleeps == [4.0, 4.0]  # one chunk's waits, not three
    assert total == 12


def test_a_timed_out_upsert_is_sent_again_and_later_batches_are_smaller(dataverse_connection, sleeps):
    """A timeout is where the size of a request may be the cause: the batch size halves (a 429 leaves it)."""
    from sandbox import testing

    ids = [uuid.uuid4() for _ in range(5)]
    operations = [WriteOperation("upsert", "accounts", str(i), {"name": f"Slow {i}"}, ids[i]) for i in range(5)]
    with open_client(dataverse_connection) as client:
        client.tokens.token()
        full = client.throttle.batch_size
        testing.inject_faults("timeout", 1)
        results = client.write_many(operations)
        stored = client.read_by_ids("accounts", ids)

    assert all(r.ok for r in results) and set(stored) == set(ids)
    assert client.request_counts["retry"] == 1
    assert client.throttle.batch_size == full // 2
