"""Fixtures for the sandbox's own tests: real HTTP into the Django app through httpx's WSGI transport."""

import httpx
import pytest
from django.core.wsgi import get_wsgi_application

from sandbox import services

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "s3cr3t-for-tests"
BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
HOST = "http://testserver"
DATAVERSE_URL = f"{HOST}/sandbox/dataverse"
TOKEN_URL = f"{HOST}/sandbox/oauth/{services.DEMO_TENANT}/oauth2/v2.0/token"
BC_ROOT = f"{HOST}/sandbox/bc/v2.0/{services.DEMO_TENANT}/{services.DEMO_ENVIRONMENT}/api/v2.0/"
DV_ROOT = f"{DATAVERSE_URL}/api/data/v9.2/"


@pytest.fixture
def http():
    with httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application()), base_url=HOST) as client:
        yield client


def get_token(http, scope, client_id=CLIENT_ID, secret=CLIENT_SECRET):
    response = http.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": scope},
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
def registered():
    services.register_client(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


@pytest.fixture
def seeded(registered):
    return services.seed_demo(customers=30, accounts=25, shared=6)


@pytest.fixture
def company_id(seeded):
    return str(services.demo_company_id())


@pytest.fixture
def bc(http, registered):
    """An httpx client rooted at the BC API with a valid bearer token."""
    token = get_token(http, BC_SCOPE)
    with httpx.Client(
        transport=httpx.WSGITransport(app=get_wsgi_application()),
        base_url=BC_ROOT,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    ) as client:
        yield client


@pytest.fixture
def dv(http, registered):
    """An httpx client rooted at the Dataverse Web API with a valid bearer token and the usual OData headers."""
    token = get_token(http, f"{DATAVERSE_URL}/.default")
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
    }
    with httpx.Client(
        transport=httpx.WSGITransport(app=get_wsgi_application()), base_url=DV_ROOT, headers=headers
    ) as client:
        yield client
