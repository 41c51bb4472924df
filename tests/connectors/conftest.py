"""Connections pointed at the sandbox, reached in-process over real HTTP (httpx.WSGITransport)."""

import pytest

from connectors import resilience
from connectors.auth import clear_token_cache
from connectors.choices import ConnectionKind
from connectors.models import Connection

CLIENT_ID = "3f0e2d1c-connectors-tests"
CLIENT_SECRET = "connectors-tests-secret-9d8c7b"
SANDBOX = "http://testserver/sandbox"


@pytest.fixture(autouse=True)
def _fresh_tokens():
    """Tokens are cached per process; each test starts without one so token behaviour is deterministic."""
    clear_token_cache()
    yield
    clear_token_cache()


@pytest.fixture
def sleeps(monkeypatch):
    """Record the retry waits instead of sleeping them (the waits themselves are what the tests check)."""
    waited: list[float] = []
    monkeypatch.setattr(resilience, "sleep", waited.append)
    return waited


@pytest.fixture
def sandbox(sandbox_http):
    """The sandbox with a small seed and our app registration; returns the sandbox.services module."""
    from sandbox import services, testing

    services.register_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    services.seed_demo(customers=12, accounts=12, shared=3)
    testing.clear_faults()
    yield services
    testing.clear_faults()


def make_connection(kind: str, services, **overrides) -> Connection:
    tenant = services.DEMO_TENANT
    fields = {
        "kind": kind,
        "name": f"sandbox {kind}",
        "tenant": tenant,
        "client_id": CLIENT_ID,
        "token_url": f"{SANDBOX}/oauth/{tenant}/oauth2/v2.0/token",
        "page_size": 5000,
        "batch_size": 100,
        "timeout_seconds": 10,
    }
    if kind == ConnectionKind.BUSINESS_CENTRAL:
        fields.update(
            environment_url=f"{SANDBOX}/bc",
            bc_environment=services.DEMO_ENVIRONMENT,
            bc_company_id=services.demo_company_id(),
        )
    else:
        fields.update(environment_url=f"{SANDBOX}/dataverse")
    fields.update(overrides)
    secret = fields.pop("client_secret", CLIENT_SECRET)
    connection = Connection(**fields)
    connection.set_client_secret(secret)
    connection.save()
    return connection


@pytest.fixture
def bc_connection(sandbox):
    return make_connection(ConnectionKind.BUSINESS_CENTRAL, sandbox)


@pytest.fixture
def dataverse_connection(sandbox):
    return make_connection(ConnectionKind.DATAVERSE, sandbox)


@pytest.fixture
def sandbox_connection(sandbox):
    """A factory: `sandbox_connection("business_central", bc_company_id=...)` with any field overridden."""
    return lambda kind, **overrides: make_connection(kind, sandbox, **overrides)
