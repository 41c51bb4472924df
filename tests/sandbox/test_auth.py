"""The Entra ID client-credentials token endpoint and the bearer check on every emulated call."""

import pytest

from sandbox import testing
from tests.sandbox.conftest import (
    BC_ROOT,
    BC_SCOPE,
    CLIENT_ID,
    CLIENT_SECRET,
    DATAVERSE_URL,
    DV_ROOT,
    TOKEN_URL,
    get_token,
)

pytestmark = pytest.mark.django_db(databases=["default", "sandbox"])


def _token_request(http, **overrides):
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": BC_SCOPE,
    }
    form.update(overrides)
    return http.post(TOKEN_URL, data=form)


def test_token_response_has_entra_shape(http, registered):
    response = _token_request(http)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 40


def test_http_basic_client_authentication_is_accepted(http, registered):
    form = {"grant_type": "client_credentials", "scope": BC_SCOPE}
    response = http.post(TOKEN_URL, data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 200


def test_wrong_secret_is_refused_with_entra_error(http, registered):
    response = _token_request(http, client_secret="nope")
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["error_codes"] == [7000215]
    assert {"error_description", "timestamp", "trace_id", "correlation_id"} <= set(body)


def test_unknown_client_and_bad_scope_and_grant_are_refused(http, registered):
    assert _token_request(http, client_id="someone-else").json()["error"] == "unauthorized_client"
    bad_scope = _token_request(http, scope="https://graph.microsoft.com/.default")
    assert bad_scope.status_code == 400
    assert bad_scope.json()["error"] == "invalid_scope"
    assert bad_scope.json()["error_codes"] == [70011]
    two_resources = _token_request(http, scope=f"{BC_SCOPE} {DATAVERSE_URL}/.default")
    assert two_resources.json()["error"] == "invalid_scope"
    assert _token_request(http, grant_type="password").json()["error"] == "unsupported_grant_type"


def test_register_client_is_idempotent_and_keeps_only_a_hash(registered):
    from sandbox.models import AppClient

    testing_secret = CLIENT_SECRET
    from sandbox import services

    services.register_client(client_id=CLIENT_ID, client_secret=testing_secret)
    clients = AppClient.objects.using("sandbox").filter(client_id=CLIENT_ID)
    assert clients.count() == 1
    assert testing_secret not in clients.get().secret_hash


def test_calls_without_or_with_a_bad_token_get_401_in_each_envelope(http, seeded):
    bc = http.get(f"{BC_ROOT}companies")
    assert bc.status_code == 401
    assert bc.json()["error"]["code"] == "Authentication_InvalidCredentials"
    assert "CorrelationId" in bc.json()["error"]["message"]
    dv = http.get(f"{DV_ROOT}accounts", headers={"Authorization": "Bearer made-up"})
    assert dv.status_code == 401
    assert "error" in dv.json()


def test_a_token_is_good_only_for_the_service_of_its_scope(http, seeded):
    bc_token = get_token(http, BC_SCOPE)
    dv_token = get_token(http, f"{DATAVERSE_URL}/.default")
    assert http.get(f"{BC_ROOT}companies", headers={"Authorization": f"Bearer {bc_token}"}).status_code == 200
    assert http.get(f"{DV_ROOT}accounts", headers={"Authorization": f"Bearer {bc_token}"}).status_code == 401
    assert http.get(f"{BC_ROOT}companies", headers={"Authorization": f"Bearer {dv_token}"}).status_code == 401
    assert http.get(f"{DV_ROOT}accounts", headers={"Authorization": f"Bearer {dv_token}"}).status_code == 200


def test_configured_lifetime_and_expiry(http, seeded):
    testing.set_token_lifetime(120)
    response = _token_request(http)
    assert response.json()["expires_in"] == 120
    token = response.json()["access_token"]
    assert http.get(f"{BC_ROOT}companies", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    testing.expire_tokens()
    expired = http.get(f"{BC_ROOT}companies", headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    testing.set_token_lifetime(0)
    instantly_expired = _token_request(http).json()["access_token"]
    assert http.get(f"{BC_ROOT}companies", headers={"Authorization": f"Bearer {instantly_expired}"}).status_code == 401


def test_bc_token_is_bound_to_its_tenant(http, seeded):
    other_tenant_url = TOKEN_URL.replace(services_tenant(), "contoso.onmicrosoft.com")
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": BC_SCOPE,
    }
    token = http.post(other_tenant_url, data=form).json()["access_token"]
    response = http.get(f"{BC_ROOT}companies", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def services_tenant():
    from sandbox import services

    return services.DEMO_TENANT
