"""Over a real socket (Django's live server): the same clients, with real dropped connections and timeouts."""

import uuid

import pytest

from connectors.clients import open_client
from connectors.types import WriteOperation

# serialized_rollback: leave the database as later serialized-rollback tests expect it (no re-created content types).
pytestmark = pytest.mark.django_db(databases=["default", "sandbox"], transaction=True, serialized_rollback=True)


@pytest.fixture
def live_sandbox(live_server):
    from sandbox import services, testing
    from tests.connectors.conftest import CLIENT_ID, CLIENT_SECRET

    services.register_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    services.seed_demo(customers=6, accounts=6, shared=2)
    testing.clear_faults()
    yield services, live_server.url
    testing.clear_faults()


def socket_connection(kind, services, base, **overrides):
    from tests.connectors.conftest import make_connection

    return make_connection(
        kind,
        services,
        token_url=f"{base}/sandbox/oauth/{services.DEMO_TENANT}/oauth2/v2.0/token",
        environment_url=f"{base}/sandbox/{'bc' if kind == 'business_central' else 'dataverse'}",
        **overrides,
    )


def test_upserts_over_a_socket_survive_an_outage_without_duplicates(live_sandbox, sleeps):
    # The sandbox drops connections for real only under runserver; under the live server test thread its "drop"
    # fault arrives as a 500, so this test uses a 503 outage (with Retry-After), which crosses the socket as is.
    from sandbox import testing

    services, base = live_sandbox
    connection = socket_connection("dataverse", services, base, timeout_seconds=5)
    ids = [uuid.uuid4() for _ in range(3)]
    with open_client(connection) as client:
        client.tokens.token()
        testing.inject_faults("503", 1, retry_after=2)
        results = client.write_many(
            [WriteOperation("upsert", "accounts", str(i), {"name": f"Socket {i}"}, ids[i]) for i in range(3)]
        )
        stored = client.read_by_ids("accounts", ids)
        total = client.count("accounts")

    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert set(stored) == set(ids) and total == 6 + 3
    assert client.request_counts["retry"] == 1 and sleeps == [2.0]


def test_bc_reads_page_by_page_over_a_socket(live_sandbox):
    services, base = live_sandbox
    with open_client(socket_connection("business_central", services, base)) as client:
        pages = list(client.read_pages("customers", page_size=4))
    assert [len(p.rows) for p in pages] == [4, 2]


def test_an_idempotent_request_that_hangs_is_cut_short_once_its_kind_is_known_to_answer_quickly(
    live_sandbox, sleeps, monkeypatch
):
    """The connection waits a minute for an answer; a read, whose answers come in milliseconds, is given up after
    the adaptive timeout's floor (lowered to 0.5 s here) and sent again, instead of holding its slot a minute."""
    import time

    from connectors import resilience
    from sandbox import testing

    monkeypatch.setattr(resilience.ResponseTimes, "FLOOR", 0.5)
    services, base = live_sandbox
    connection = socket_connection("dataverse", services, base, timeout_seconds=60)
    with open_client(connection) as client:
        for _ in range(resilience.ResponseTimes.NEEDED):
            client.count("accounts")  # quick answers: now the timeout adapts
        testing.inject_faults("latency", 1, seconds=4)  # the next request hangs 4 s before it answers
        started = time.monotonic()
        total = client.count("accounts")
        elapsed = time.monotonic() - started

    assert total == 6
    assert client.request_counts["retry"] == 1  # cut short, then sent again
    assert elapsed < 3, elapsed  # not the 4 s the hung request took, let alone the minute
