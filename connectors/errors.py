"""Turn remote failures into classified ConnectorErrors the engine and the admin can act on.

Both services answer errors as `{"error": {"code": ..., "message": ...}}` (Business Central codes such as
`Request_EntityChanged`, Dataverse hex codes such as `0x80060882`, possibly empty). We branch on the HTTP status
first, as Microsoft advises, and use the code only to tell apart statuses that mean several things.
"""

from __future__ import annotations

import json
import re
import ssl
from typing import Any

import httpx

from connectors.types import ConnectorError, ErrorKind

CORRELATION_HEADERS = (
    "x-ms-correlation-request-id",
    "x-ms-service-request-id",
    "request-id",
    "x-ms-request-id",
    "client-request-id",
    "ms-correlation-x",
)
_CORRELATION_IN_MESSAGE = re.compile(r"CorrelationId:\s*([0-9a-fA-F-]{36})", re.IGNORECASE)
_CORRELATION_SUFFIX = re.compile(r"\s*CorrelationId:\s*[0-9a-fA-F-]{36}\.?", re.IGNORECASE)

# Codes that name a missing referenced record (currency, salesperson, parent account), not the target itself.
MISSING_DEPENDENCY_CODES = {"Internal_InvalidTableRelation", "Internal_RecordNotFound"}
CONFLICT_CODES = {"Request_EntityChanged", "0x80060882"}
NOT_FOUND_CODES = {"0x80040217", "Internal_CompanyNotFound", "BadRequest_ResourceNotFound"}

# Where the field name sits in the usual validation messages of both services.
_FIELD_PATTERNS = (
    re.compile(r"The length of the '(\w+)' attribute"),  # Dataverse max length
    re.compile(r"[Ff]ield '([\w .]+)'"),  # BC "Field 'x' must not be blank"
    re.compile(r"attribute '(\w+)'"),
    re.compile(r"[Pp]roperty '([\w@.]+)'"),
    re.compile(r"'(\w+)' (?:is|are) required"),
)


def parse_error_body(body: Any) -> tuple[str, str]:
    """Return (code, message) from either service's error envelope, tolerating anything else."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("code") or ""), str(error.get("message") or "")
        if isinstance(error, str):  # OAuth token endpoint: {"error": "invalid_client", "error_description": ...}
            return error, str(body.get("error_description") or "")
    return "", ""


def correlation_id(headers: httpx.Headers | dict[str, Any] | None, message: str = "", body: Any = None) -> str:
    if headers:
        lowered = {k.lower(): v for k, v in dict(headers).items()}
        for name in CORRELATION_HEADERS:
            if lowered.get(name):
                return str(lowered[name])
    if isinstance(body, dict) and body.get("correlation_id"):
        return str(body["correlation_id"])
    match = _CORRELATION_IN_MESSAGE.search(message or "")
    return match.group(1) if match else ""


def same_error(message: str, other: str) -> bool:
    """Whether two messages report the same error: Business Central gives even the same error a new
    correlation id each time, so it is left out of the comparison."""
    return _CORRELATION_SUFFIX.sub("", message or "") == _CORRELATION_SUFFIX.sub("", other or "")


def field_from_message(message: str) -> str:
    for pattern in _FIELD_PATTERNS:
        match = pattern.search(message or "")
        if match:
            return match.group(1)
    return ""


def infer_field(error: ConnectorError, values: dict[str, Any]) -> None:
    """Name the field of a validation error whose message quotes the value but not the field (Business Central's
    "The length of the string is 57, but it must be less than or equal to 50 characters. Value: ...")."""
    if error.kind != ErrorKind.VALIDATION or error.field:
        return
    for name, value in values.items():
        if isinstance(value, str) and len(value) >= 3 and value[:30] in error.message:
            error.field = name
            return


def kind_for(status: int, code: str, message: str = "") -> ErrorKind:
    """Classify one failed call (or one failed part of a batch) by status, then by code."""
    if status == 401:
        return ErrorKind.AUTHENTICATION
    if status == 403:
        return ErrorKind.PERMISSION
    if status == 429:
        return ErrorKind.THROTTLED
    if code in CONFLICT_CODES or (status == 412 and "version" in message.lower()):
        return ErrorKind.CONFLICT
    if code in MISSING_DEPENDENCY_CODES:
        return ErrorKind.MISSING_DEPENDENCY
    if status == 404 or code in NOT_FOUND_CODES:
        return ErrorKind.NOT_FOUND
    if status in (408, 502, 503, 504) or status >= 500 and code in ("", "Internal_ServerError"):
        return ErrorKind.TRANSIENT
    if code == "Authentication_InvalidCredentials":
        return ErrorKind.AUTHENTICATION
    if code.startswith("Authorization_"):
        return ErrorKind.PERMISSION
    return ErrorKind.VALIDATION


def error_from_parts(status: int, body: Any, headers: httpx.Headers | dict[str, Any] | None = None) -> ConnectorError:
    """Build the classified error for one response (or one `$batch` part) from its status, body and headers."""
    code, message = parse_error_body(body)
    kind = kind_for(status, code, message)
    if not message:
        message = _default_message(status)
    excerpt = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False) if body is not None else ""
    return ConnectorError(
        kind,
        message,
        status=status,
        remote_code=code,
        correlation_id=correlation_id(headers, message, body),
        field=field_from_message(message) if kind == ErrorKind.VALIDATION else "",
        response_excerpt=excerpt,
    )


def error_from_response(response: httpx.Response) -> ConnectorError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:2000]
    return error_from_parts(response.status_code, body, response.headers)


def error_from_exception(exc: Exception, url: httpx.URL | str | None = None) -> ConnectorError:
    """Say plainly what went wrong below HTTP: DNS, TLS, refused connection, timeout or a dropped connection."""
    host = httpx.URL(str(url)).host if url else ""
    where = f" to {host}" if host else ""
    text = str(exc)
    if isinstance(exc, httpx.TimeoutException):
        message = f"The request{where} timed out ({type(exc).__name__})."
    elif isinstance(exc, httpx.ConnectError) and _is_dns_failure(text):
        message = f"DNS lookup failed: the host name {host or ''} cannot be resolved. Check the environment URL."
    elif _is_tls_failure(exc):
        message = f"TLS handshake{where} failed: {text}. Check the URL and the server certificate."
    elif isinstance(exc, httpx.ConnectError):
        message = f"Could not connect{where}: {text or 'connection refused'}."
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        message = f"The connection{where} was dropped before the response arrived ({text or type(exc).__name__})."
    else:
        message = f"The request{where} failed: {text or type(exc).__name__}."
    return ConnectorError(ErrorKind.TRANSIENT, message, remote_code=type(exc).__name__)


def is_configuration_failure(exc: Exception) -> bool:
    """DNS and TLS failures: the URL or the certificate is wrong, retrying will not help."""
    return isinstance(exc, httpx.ConnectError) and (_is_dns_failure(str(exc)) or _is_tls_failure(exc))


def _is_dns_failure(text: str) -> bool:
    text = text.lower()
    return any(
        marker in text
        for marker in ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution")
    )


def _is_tls_failure(exc: Exception) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(current) or "SSL" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _default_message(status: int) -> str:
    return {
        401: "The service rejected the access token.",
        403: "The integration user lacks a permission for this request.",
        404: "Not found.",
        429: "The service is throttling requests.",
        503: "The service is unavailable.",
    }.get(status, f"The service answered HTTP {status}.")
