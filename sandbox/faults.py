"""Fault injection and service-protection throttling, checked before every emulated API call.

Faults live in the sandbox database so a test (or the admin page) in one process can break the next N requests
served by another. Throttling follows the services: a per-client sliding window of requests (429 with an integer
`Retry-After` and the documented body) and a concurrency cap that trips immediately.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Sum

from sandbox import rows
from sandbox.models import Fault, RequestLog
from sandbox.wire import ApiError

KINDS = ("429", "503", "timeout", "drop", "latency")


@dataclass
class Disruption:
    """A fault that is not an HTTP answer: the connection is dropped, or the answer never comes in time."""

    kind: str  # "drop" or "timeout"
    seconds: float = 0.0


def _throttled(
    service: str, retry_after: int, *, concurrency: bool = False, limit: int = 0, window: int = 300
) -> ApiError:
    headers = {"Retry-After": str(retry_after)}
    if service == "dataverse":
        if concurrency:
            return ApiError(429, "0x80072326", f"Number of concurrent requests exceeded the limit of {limit}.", headers)
        return ApiError(
            429,
            "0x80072322",
            f"Number of requests exceeded the limit of {limit} over time window of {window} seconds.",
            headers,
        )
    return ApiError(
        429,
        "Application_TooManyRequests",
        "Too many requests reached. Please try again later." if not concurrency else "Too many concurrent requests.",
        headers,
    )


def _take_fault(service: str) -> Fault | None:
    with transaction.atomic(using=rows.DB):
        fault = Fault.objects.using(rows.DB).filter(remaining__gt=0, service__in=["", service]).order_by("id").first()
        if fault is None:
            return None
        Fault.objects.using(rows.DB).filter(id=fault.id).update(remaining=F("remaining") - 1)
    return fault


def before_request(service: str) -> Disruption | None:
    """Apply the next injected fault for `service`: raise the HTTP error, sleep, or tell the view to disrupt."""
    fault = _take_fault(service)
    if fault is None:
        return None
    if fault.kind == "latency":
        time.sleep(fault.seconds)
        return None
    if fault.kind == "429":
        raise _throttled(service, fault.retry_after, limit=6000)
    if fault.kind == "503":
        code = "Internal_ServiceUnavailable" if service == "bc" else "0x80040216"
        raise ApiError(503, code, "The service is temporarily unavailable.", {"Retry-After": str(fault.retry_after)})
    return Disruption(fault.kind, fault.seconds)


# --- throttling ------------------------------------------------------------------------------------------------

_active: dict[tuple[str, str], int] = defaultdict(int)
_active_lock = threading.Lock()


def throttle_settings(stored: dict | None = None) -> dict:
    settings = dict(rows.DEFAULTS["throttle"])
    settings.update(stored if stored is not None else (rows.get_setting("throttle") or {}))
    return settings


def check_window(service: str, client_id: str, settings: dict) -> None:
    now = int(time.time())
    window = int(settings["window_seconds"])
    log = RequestLog.objects.using(rows.DB)
    with transaction.atomic(using=rows.DB):
        updated = log.filter(client_id=client_id, service=service, second=now).update(count=F("count") + 1)
        if not updated:
            log.create(client_id=client_id, service=service, second=now, count=1)
        used = log.filter(client_id=client_id, service=service, second__gt=now - window).aggregate(n=Sum("count"))["n"]
        log.filter(second__lte=now - window).delete()  # the window slid past these
    if used > int(settings["limit"]):
        raise _throttled(service, int(settings["retry_after"]), limit=int(settings["limit"]), window=window)


class concurrency_slot:
    """Counts requests in flight per client in this process; over the cap the request fails at once (429)."""

    def __init__(self, service: str, client_id: str, settings: dict):
        self.key = (service, client_id)
        self.service = service
        self.settings = settings

    def __enter__(self):
        cap = int(self.settings["concurrency"])
        with _active_lock:
            if _active[self.key] >= cap:
                raise _throttled(self.service, int(self.settings["retry_after"]), concurrency=True, limit=cap)
            _active[self.key] += 1
        return self

    def __exit__(self, *exc):
        with _active_lock:
            _active[self.key] -= 1
        return False
