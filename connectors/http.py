"""The one place that builds httpx clients, so tests can route every connector request through another transport.

Production never calls `override_transport`; tests use it to reach the sandbox in-process with real HTTP semantics:

    with override_transport(httpx.WSGITransport(app=get_wsgi_application())):
        client = open_client(connection)

It also works as a plain setter (`override_transport(t)` ... `override_transport(None)`) for pytest fixtures.
"""

from __future__ import annotations

import threading

import httpx

_lock = threading.Lock()
_override: httpx.BaseTransport | None = None


class override_transport:  # noqa: N801 (used like a function: a setter and a context manager)
    """Make every client created from now on send its requests through `transport` (None = the network)."""

    def __init__(self, transport: httpx.BaseTransport | None):
        global _override
        with _lock:
            self._previous = _override
            _override = transport

    def __enter__(self) -> override_transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _override
        with _lock:
            _override = self._previous


class _SharedTransport(httpx.BaseTransport):
    """The overriding transport as each client sees it: closing one client must not close it for the others."""

    def __init__(self, transport: httpx.BaseTransport):
        self._transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._transport.handle_request(request)

    def close(self) -> None:
        pass


def current_transport() -> httpx.BaseTransport | None:
    return _SharedTransport(_override) if _override is not None else None


def build_http_client(*, timeout_seconds: float, max_connections: int = 20) -> httpx.Client:
    """A pooled client with a timeout on every phase of every call, through the overriding transport if any."""
    limits = httpx.Limits(max_connections=max(1, max_connections), max_keepalive_connections=max(1, max_connections))
    timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 15.0))
    transport = current_transport()
    if transport is not None:
        return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)
    return httpx.Client(timeout=timeout, limits=limits, follow_redirects=False)
