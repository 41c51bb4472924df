"""OAuth 2.0 client credentials (Microsoft Entra ID or the sandbox's token endpoint), one cached token per scope.

Why Authlib: it is already a dependency, its httpx `OAuth2Client` builds the client-credentials form, posts it and
parses both the success and the RFC 6749 error shapes (raising `OAuthError` with the `error`/`error_description`
Entra sends), and computes `expires_at` from `expires_in`. MSAL would also fit but brings its own HTTP stack (requests)
that our transport override and retry loop could not reach. What Authlib does not give us, and is written here:
a cache shared by every client of the process (so each run does not fetch a new token), renewal a margin before
expiry, one renewal on a 401, and our retry/backoff on 429/5xx/timeouts of the token endpoint.

Tokens and secrets are never logged and never put in an exception message.
"""

from __future__ import annotations

import hashlib
import threading
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx
from authlib.integrations.base_client.errors import OAuthError

with warnings.catch_warnings():
    # Authlib 1.9 prefers the `httpx2` package and warns when it falls back to httpx, which we pin and use.
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client

from connectors import observers
from connectors.errors import error_from_response
from connectors.http import current_transport
from connectors.types import ConnectorError, ErrorKind

# Renew this long before expiry: 5 minutes for real tokens (60-90 min lifetime), a fifth of the lifetime for short ones.
MAX_RENEWAL_MARGIN_SECONDS = 300


@dataclass(frozen=True)
class CachedToken:
    access_token: str
    expires_at: float  # time.time() seconds
    renew_at: float

    def __repr__(self) -> str:
        return f"<CachedToken expires_at={self.expires_at:.0f}>"  # never the token itself


_cache: dict[tuple[str, str, str, str], CachedToken] = {}
_cache_lock = threading.Lock()


def clear_token_cache() -> None:
    with _cache_lock:
        _cache.clear()


# Plain messages for the Entra errors an administrator can fix (AADSTS codes in error_description).
_AADSTS_HINTS = {
    "AADSTS7000215": "the client secret is wrong",
    "AADSTS7000222": "the client secret has expired",
    "AADSTS700016": "no application with this client id exists in the tenant",
    "AADSTS90002": "the tenant does not exist",
    "AADSTS900023": "the tenant id is not valid",
    "AADSTS70011": "the scope is not valid",
    "AADSTS500011": "the resource (scope) is not known in the tenant",
}


def _plain_token_error(error: str, description: str) -> tuple[ErrorKind, str]:
    hint = next((text for code, text in _AADSTS_HINTS.items() if code in description), "")
    if error in ("invalid_client", "unauthorized_client") or "secret" in hint or "application" in hint:
        kind = ErrorKind.AUTHENTICATION
        summary = f"Bad credentials: {hint or 'the token endpoint rejected the client id or secret'}."
    elif error in ("invalid_scope", "invalid_resource"):
        kind = ErrorKind.PERMISSION
        summary = f"Token refused for this scope: {hint or 'the scope is not valid for this application'}."
    elif error == "invalid_request" and "tenant" in (hint + description.lower()):
        kind = ErrorKind.AUTHENTICATION
        summary = f"Bad tenant: {hint or 'the tenant in the token URL is not valid'}."
    else:
        kind = ErrorKind.AUTHENTICATION
        summary = f"The token endpoint refused the request ({error})."
    return kind, summary


class TokenProvider:
    """Fetch and cache the bearer token for one (token URL, client, scope)."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        secret_problem: str = "",
        timeout: httpx.Timeout,
        send_with_retries: Callable[[Callable[[], httpx.Response], str], httpx.Response],
        connection_id: int | None = None,
        service: str = "",
    ):
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._secret_problem = secret_problem
        self._scope = scope
        self._timeout = timeout
        self._send_with_retries = send_with_retries
        self._connection_id = connection_id  # for the request observers: whose token failed
        self._service = service
        secret_digest = hashlib.sha256(client_secret.encode()).hexdigest()
        self._key = (token_url, client_id, secret_digest, scope)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TokenProvider {self._token_url} {self._scope}>"

    def current(self) -> str | None:
        """The cached token, if any (used only to scrub it out of error texts)."""
        with _cache_lock:
            cached = _cache.get(self._key)
        return cached.access_token if cached else None

    def token(self, *, force_new: bool = False, rejected: str | None = None) -> str:
        """Return a valid access token; renew it when near expiry, or when `rejected` is the cached one (a 401)."""
        with self._lock:
            with _cache_lock:
                cached = _cache.get(self._key)
            # A 401 with an older token than the cached one means another client already renewed it.
            if cached and not force_new and time.time() < cached.renew_at and cached.access_token != rejected:
                return cached.access_token
            try:
                fresh = self._fetch()
            except ConnectorError as exc:
                observers.notify(
                    self._connection_id, self._service, "token", exc.status, retried=False, token_failure=True
                )
                raise
            with _cache_lock:
                _cache[self._key] = fresh
            return fresh.access_token

    def _fetch(self) -> CachedToken:
        if self._secret_problem:
            raise ConnectorError(ErrorKind.AUTHENTICATION, self._secret_problem)
        if not self._client_secret:
            raise ConnectorError(ErrorKind.AUTHENTICATION, "No client secret is stored for this connection.")
        oauth = OAuth2Client(
            client_id=self._client_id,
            client_secret=self._client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name, not a secret)
            scope=self._scope,
            timeout=self._timeout,
            **({"transport": current_transport()} if current_transport() is not None else {}),
        )
        responses: list[httpx.Response] = []

        def keep_response(response: httpx.Response) -> httpx.Response:
            responses.append(response)
            if response.status_code == 429:  # throttled: hand it to the retry loop, not to the OAuth error parser
                raise httpx.HTTPStatusError("throttled", request=response.request, response=response)
            return response

        oauth.register_compliance_hook("access_token_response", keep_response)

        def attempt() -> httpx.Response:
            responses.clear()
            try:
                oauth.fetch_token(self._token_url, grant_type="client_credentials")
            except OAuthError as exc:
                kind, summary = _plain_token_error(exc.error or "", exc.description or "")
                response = responses[-1] if responses else None
                raise ConnectorError(
                    kind,
                    summary,
                    status=response.status_code if response is not None else None,
                    remote_code=exc.error or "",
                    correlation_id=_token_correlation(response),
                    response_excerpt=(exc.description or "")[:500],
                ) from None
            except httpx.HTTPStatusError as exc:  # a 5xx or non-JSON answer of the token endpoint
                return exc.response
            except ValueError as exc:  # a 2xx without JSON
                raise ConnectorError(ErrorKind.AUTHENTICATION, f"The token endpoint sent no token ({exc}).") from None
            return responses[-1]

        started = time.time()
        with oauth:
            response = self._send_with_retries(attempt, "token")
        if response.status_code >= 400:
            raise error_from_response(response)
        token = oauth.token
        access_token = token.get("access_token") if token else None
        if not access_token:
            raise ConnectorError(ErrorKind.AUTHENTICATION, "The token endpoint answered without an access token.")
        expires_in = float(token.get("expires_in") or 3600)
        margin = min(MAX_RENEWAL_MARGIN_SECONDS, expires_in / 5)
        return CachedToken(access_token, started + expires_in, started + expires_in - margin)


def _token_correlation(response: httpx.Response | None) -> str:
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("correlation_id") or body.get("trace_id") or "") if isinstance(body, dict) else ""


class BearerAuth(httpx.Auth):
    """Put the cached token on every request; on a 401 renew it once and resend the request."""

    def __init__(self, provider: TokenProvider):
        self.provider = provider

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.provider.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            response.read()
            token = self.provider.token(rejected=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
