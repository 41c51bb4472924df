import uuid

import pytest

from connectors.choices import ConnectionKind
from connectors.models import Connection


def sandbox_connection_pair(base_url: str, *, page_size: int = 50) -> tuple[Connection, Connection]:
    """Seed the sandbox and point one connection per system at it (base_url: http://testserver or a live server)."""
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
def sandbox_connections(sandbox_http):
    """Seeded sandbox and the two connections pointing at it, reached in-process over HTTP."""
    return sandbox_connection_pair("http://testserver")
