"""Entra ID client-credentials token endpoint, and the bearer-token check every emulated call goes through.

Tokens are opaque random strings; only their SHA-256 is stored. A token is good for the one service (audience)
whose scope it was issued for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from base64 import b64decode
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from sandbox import rows
from sandbox.models import AccessToken, AppClient
from sandbox.wire import ApiError, Resp, dumps

BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
BC_AUDIENCE = "https://api.businesscentral.dynamics.com"
DATAVERSE_PATH = "/sandbox/dataverse"
_ITERATIONS = 20_000


def hash_secret(secret: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), _ITERATIONS).hex()
    return f"pbkdf2_sha256${_ITERATIONS}${salt}${digest}"


def check_secret(secret: str, stored: str) -> bool:
    try:
        _, _, salt, _ = stored.split("$")
    except ValueError:
        return False
    return hmac.compare_digest(hash_secret(secret, salt), stored)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _entra_error(status: int, error: str, code: int, description: str) -> Resp:
    now = datetime.now(UTC)
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} "
        f"Timestamp: {now:%Y-%m-%d %H:%M:%SZ}",
        "error_codes": [code],
        "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
        "trace_id": trace,
        "correlation_id": corr,
    }
    return Resp(status, dumps(body), {"Content-Type": "application/json; charset=utf-8"})


def service_for_scope(scope: str) -> str | None:
    """Which emulated service a `.default` scope names: BC's fixed resource, or the Dataverse environment URL."""
    if scope == BC_SCOPE:
        return "bc"
    if scope.endswith("/.default"):
        resource = scope[: -len("/.default")].rstrip("/")
        if resource.startswith(("http://", "https://")) and resource.endswith(DATAVERSE_PATH):
            return "dataverse"
    return None


def issue_token(*, tenant: str, form_body: bytes, authorization: str = "") -> Resp:
    """POST /sandbox/oauth/{tenant}/oauth2/v2.0/token (application/x-www-form-urlencoded)."""
    form = dict(parse_qsl(form_body.decode(errors="replace"), keep_blank_values=True))
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    if authorization.lower().startswith("basic "):
        try:
            client_id, _, client_secret = b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            return _entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    if form.get("grant_type") != "client_credentials":
        return _entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type (this emulator: client_credentials).",
        )
    if not client_id:
        return _entra_error(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
        )
    scopes = form.get("scope", "").split()
    if not scopes:
        return _entra_error(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
        )
    services = {service_for_scope(s) for s in scopes}
    if None in services or len(scopes) != 1:
        return _entra_error(
            400,
            "invalid_scope",
            70011,
            "The provided value for the input parameter 'scope' is not valid. "
            f"The scope {' '.join(scopes)} is not valid.",
        )
    client = AppClient.objects.using(rows.DB).filter(client_id=client_id).first()
    if client is None:
        return _entra_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
        )
    if not client_secret or not check_secret(client_secret, client.secret_hash):
        return _entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
    lifetime = int(rows.get_setting("token_lifetime"))
    token = "eyJ0eXAiOiJKV1QiLCJ" + secrets.token_urlsafe(48)
    AccessToken.objects.using(rows.DB).create(
        token_hash=token_hash(token),
        client_id=client_id,
        service=services.pop(),
        tenant=tenant.lower(),
        expires_at=time.time() + lifetime,
    )
    body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
    return Resp(200, dumps(body), {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"})


def _unauthorized(service: str, reason: str, message: str) -> ApiError:
    challenge = 'Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"'
    headers = {"WWW-Authenticate": f'{challenge}, error="invalid_token"'}
    if service == "bc":
        return ApiError(401, "Authentication_InvalidCredentials", message, headers)
    return ApiError(401, "", f"{reason}: {message}", headers)


def authenticate(service: str, authorization: str, *, tenant: str = "") -> str:
    """The client id behind a valid bearer token for `service`, or an ApiError 401."""
    if not authorization.lower().startswith("bearer "):
        raise _unauthorized(service, "RequestIsNotAuthenticated", "The request is not authenticated: no bearer token.")
    token = authorization[7:].strip()
    found = (
        AccessToken.objects.using(rows.DB)
        .filter(token_hash=token_hash(token))
        .values_list("client_id", "service", "tenant", "expires_at")
        .first()
    )
    if found is None:
        raise _unauthorized(service, "InvalidAuthTicket", "The server has rejected the client credentials.")
    client_id, audience, token_tenant, expires_at = found
    if audience != service:
        raise _unauthorized(service, "InvalidAuthTicket", "The access token was issued for another audience.")
    if tenant and token_tenant != tenant.lower():
        raise _unauthorized(service, "InvalidAuthTicket", "The access token was issued for another tenant.")
    if expires_at <= time.time():
        raise _unauthorized(service, "ExpiredAuthTicket", "The access token has expired.")
    return client_id
