"""Django entry points of the emulated services: adapt the HTTP request, check the bearer token, faults and
throttling, then hand over to sandbox.bc or sandbox.dataverse."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from email.utils import formatdate

import httpx
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from sandbox import auth, bc, costs, dataverse, faults, metering, rows
from sandbox.wire import ApiError, Req, Resp, bc_error_response, dataverse_error_response

SERVICES = {"bc": (bc.handle, bc_error_response), "dataverse": (dataverse.handle, dataverse_error_response)}


def _to_django(resp: Resp) -> HttpResponse:
    response = HttpResponse(resp.body, status=resp.status)
    if not resp.body:
        del response["Content-Type"]
    for name, value in resp.headers.items():
        response[name] = value
    # As the real services: every answer carries the server's time, which clients use to allow for clock skew.
    response["Date"] = formatdate(rows.clock_now().timestamp(), usegmt=True)
    return response


def _base_url(request: HttpRequest, rest: str) -> str:
    path = request.path
    base_path = path[: len(path) - len(rest)] if rest and path.endswith(rest) else path
    if not base_path.endswith("/"):
        base_path += "/"
    return request.build_absolute_uri(base_path)


def _request(request: HttpRequest, rest: str) -> Req:
    arrived = time.monotonic()
    return Req(
        method=request.method,
        path=rest,
        query={k: request.GET.get(k) for k in request.GET},
        raw_query=request.META.get("QUERY_STRING", ""),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.body,
        base_url=_base_url(request, rest),
        url_length=len(request.build_absolute_uri()),
        arrived=arrived,
    )


def _socket_of(request: HttpRequest) -> socket.socket | None:
    """The client socket under Django's development server (None in-process, e.g. httpx.WSGITransport)."""
    stream = request.META.get("wsgi.input")
    for _ in range(4):  # LimitedStream -> BufferedReader -> SocketIO -> socket
        if isinstance(stream, socket.socket):
            return stream
        if hasattr(stream, "_read"):  # Django's LimitedStream keeps only the wrapped stream's bound read()
            stream = getattr(stream._read, "__self__", None)
            continue
        stream = next((getattr(stream, a) for a in ("raw", "_sock") if hasattr(stream, a)), None)
    return stream if isinstance(stream, socket.socket) else None


def _disrupt(request: HttpRequest, disruption: faults.Disruption) -> HttpResponse:
    """Drop the connection (or hold it, then drop it) so the client sees a transport error, not an HTTP answer."""
    sock = _socket_of(request)
    if sock is not None:
        if disruption.kind == "timeout":
            time.sleep(disruption.seconds or 30)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        return HttpResponse(status=499)

    error = httpx.ReadTimeout if disruption.kind == "timeout" else httpx.RemoteProtocolError

    def broken_body():
        # In-process transports iterate the body inside the client's call: raising here reaches the client as
        # the same exception httpx raises for a real timeout or a server that hung up.
        raise error("Server disconnected without sending a response." if disruption.kind == "drop" else "timed out")
        yield b""  # pragma: no cover

    return StreamingHttpResponse(broken_body())


def _serve(request: HttpRequest, service: str, rest: str, tenant: str = "", api_route: str = "v2.0") -> HttpResponse:
    handler, render_error = SERVICES[service]
    req = _request(request, rest)
    req.api_route = api_route
    with rows.server_clock():
        try:
            return _serve_request(request, req, service, handler, tenant)
        except ApiError as err:
            return _to_django(render_error(err))
        except OperationalError as exc:
            if "locked" not in str(exc).lower():
                raise
            # SQLite lets one writer in at a time; a busy sandbox answers like a busy service, which clients retry.
            busy = ApiError(503, "Internal_ServerError" if service == "bc" else "0x80040216", "The database is busy.")
            busy.headers["Retry-After"] = "1"
            return _to_django(render_error(busy))


def _serve_request(request: HttpRequest, req: Req, service: str, handler, tenant: str) -> HttpResponse:
    with _database_turn:  # a profile's requests may be writing: see _database_turn
        stored = rows.get_settings("throttle", "clock_offset_seconds", costs.SETTING)
    rows.set_server_clock(stored["clock_offset_seconds"])
    if (profiled := costs.loaded(stored[costs.SETTING])) is not None:
        return _serve_with_costs(request, req, service, handler, tenant, *profiled)
    throttle = faults.throttle_settings(stored["throttle"] or {})
    disruption = faults.before_request(service)
    if disruption is not None:
        return _disrupt(request, disruption)
    req.client_id = auth.authenticate(service, req.header("authorization"), tenant=tenant)
    if not throttle.get("enabled"):
        return _to_django(handler(req))
    faults.check_window(service, req.client_id, throttle)
    with faults.concurrency_slot(service, req.client_id, throttle):
        return _to_django(handler(req))


# SQLite lets one writer in at a time, and an in-memory test database refuses a second one outright: under a cost
# profile, where many requests are in flight at once, this process runs their database work one at a time (a few
# milliseconds each) and lets only the simulated service time, slept outside any transaction, overlap.
_database_turn = threading.Lock()


def _serve_with_costs(
    request: HttpRequest, req: Req, service: str, handler, tenant: str, profile: costs.CostProfile, generation: str
) -> HttpResponse:
    """Serve one request in its service time: what the emulation itself takes (reading the request, checking the
    token, waiting for its database turn, doing the work) counts within that time, as the real service's own
    processing does; only a Business Central request's wait in the queue for a slot comes on top, as there."""
    protection = faults.protection(profile, generation)
    try:
        with _database_turn:
            disruption = faults.before_request(service)
            req.client_id = auth.authenticate(service, req.header("authorization"), tenant=tenant)
        if disruption is None and (kind := protection.draw_fault()) is not None:
            _record(service, f"fault:{kind}")
            disruption = faults.apply_fault(
                service,
                kind,
                retry_after=costs.retry_after(profile.scaled(2)),
                seconds=profile.scaled(profile.fault_timeout_seconds),
            )
        if disruption is not None:
            return _disrupt(request, disruption)
        asked = time.monotonic()
        with protection.admitted(service, req.client_id) as call:
            started = time.monotonic()
            with _database_turn, metering.metering() as meter:
                response = handler(req)
                costs.record_outcome(service, "served")
            handled = time.monotonic() - started
            # The emulation's time before admission counts too, but not where it passed while the request would
            # have waited in Business Central's queue anyway.
            work = handled + max(0.0, (asked - req.arrived) - (started - asked))
            service_time = profile.scaled(profile.service_seconds(service, meter))
            # The execution time the service counts against its budget: from admission, as the service counts.
            call[1] = max(service_time, handled)
            time.sleep(max(0.0, service_time - work))
            if work > service_time:  # the emulation itself (waiting for its database turn included) was slower
                with _database_turn:
                    costs.record_outcome(service, "overran")
                    costs.record_outcome(service, "overran_ms", round((work - service_time) * 1000))
    except ApiError as err:
        if err.status in (429, 503) and not err.injected:
            _record(service, f"refused:{err.status}:{err.code}")
        err.headers.update(_dop_hint(service, profile))
        raise
    for name, value in _dop_hint(service, profile).items():
        response.headers[name] = value
    return _to_django(response)


def _dop_hint(service: str, profile: costs.CostProfile) -> dict[str, str]:
    # send-parallel-requests: every Dataverse answer recommends the client's degree of parallelism.
    return {"x-ms-dop-hint": str(profile.dop_hint)} if service == "dataverse" else {}


def _record(service: str, outcome: str) -> None:
    with _database_turn:
        costs.record_outcome(service, outcome)


@csrf_exempt
def token(request: HttpRequest, tenant: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    return _to_django(
        auth.issue_token(tenant=tenant, form_body=request.body, authorization=request.headers.get("Authorization", ""))
    )


@csrf_exempt
def business_central(
    request: HttpRequest, tenant: str, environment: str, rest: str = "", route: str = "v2.0"
) -> HttpResponse:
    return _serve(request, "bc", rest, tenant=tenant, api_route=route)


@csrf_exempt
def dataverse_api(request: HttpRequest, rest: str = "") -> HttpResponse:
    return _serve(request, "dataverse", rest)
