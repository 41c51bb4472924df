"""Fault injection and service-protection throttling, checked before every emulated API call.

Faults live in the sandbox database so a test (or the admin page) in one process can break the next N requests
served by another. Throttling follows the services: a per-client sliding window of requests (429 with an integer
`Retry-After` and the documented body) and a concurrency cap that trips immediately.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Sum

from sandbox import costs, rows
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
    return apply_fault(service, fault.kind, retry_after=fault.retry_after, seconds=fault.seconds)


def apply_fault(service: str, kind: str, *, retry_after: int = 1, seconds: float = 0.0) -> Disruption | None:
    if kind == "latency":
        time.sleep(seconds)
        return None
    if kind in ("429", "503"):
        if kind == "429":
            error = _throttled(service, retry_after, limit=6000)
        else:
            code = "Internal_ServiceUnavailable" if service == "bc" else "0x80040216"
            error = ApiError(503, code, "The service is temporarily unavailable.", {"Retry-After": str(retry_after)})
        error.injected = True
        raise error
    return Disruption(kind, seconds)


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


# --- the services' protection under a cost profile ---------------------------------------------------------------

SHARED_FAULT_KINDS = ("429", "503", "timeout", "drop")


class ServiceProtection:
    """The limits of a cost profile (sandbox.costs), kept in this process's memory.

    Dataverse counts per user *and web server* [api-limits]: one sandbox process is one web server, so memory is
    the faithful place, and it keeps the hot path free of database writes. Per (service, client id):
    - Dataverse: requests and combined execution time in a sliding window, 429 with Retry-After when either is
      used up (0x80072322, 0x80072321); requests beyond the concurrency limit refused at once (0x80072326).
    - Business Central: requests in a sliding window (429); `bc_concurrency` processed at once, up to `bc_queue`
      more waiting their turn, 429 beyond; a request still waiting after the operation timeout gets 503.
    """

    def __init__(self, profile: costs.CostProfile):
        self.profile = profile
        self._condition = threading.Condition()
        self._calls: dict[tuple[str, str], deque[list[float]]] = defaultdict(deque)  # [arrival, execution seconds]
        self._active: dict[tuple[str, str], int] = defaultdict(int)
        self._waiting: dict[tuple[str, str], int] = defaultdict(int)
        self._faults = random.Random(profile.fault_seed)

    def draw_fault(self) -> str | None:
        """The injected failure of the next request, if it gets one: the same sequence for the same seed."""
        if self.profile.fault_share <= 0:
            return None
        with self._condition:
            if self._faults.random() >= self.profile.fault_share:
                return None
            return self._faults.choice(SHARED_FAULT_KINDS)

    def _window(self, service: str) -> float:
        return self.profile.scaled(getattr(self.profile, f"{'bc' if service == 'bc' else 'dataverse'}_window_seconds"))

    def _check_window(self, service: str, key: tuple[str, str], now: float) -> None:
        p, window = self.profile, self._window(service)
        calls = self._calls[key]
        while calls and calls[0][0] <= now - window:
            calls.popleft()
        limit = p.bc_request_limit if service == "bc" else p.dataverse_request_limit
        if len(calls) >= limit:
            wait = costs.retry_after(calls[0][0] + window - now)
            raise _throttled(service, wait, limit=limit, window=round(window))
        if service == "dataverse":
            budget = p.scaled(p.dataverse_execution_seconds)
            used = sum(call[1] for call in calls)
            if used >= budget:
                # Retry once enough of the oldest requests' execution time has slid out of the window.
                freed, wait = 0.0, window
                for arrival, seconds in calls:
                    freed += seconds
                    if used - freed < budget:
                        wait = arrival + window - now
                        break
                raise ApiError(
                    429,
                    "0x80072321",
                    f"Combined execution time of incoming requests exceeded limit of "
                    f"{round(budget * 1000):,} milliseconds over time window of {round(window)} seconds. "
                    "Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                    {"Retry-After": str(costs.retry_after(wait))},
                )

    @contextmanager
    def admitted(self, service: str, client_id: str) -> Iterator[list[float]]:
        """Hold a processing slot for one request; yields its window entry, whose execution time the caller sets."""
        key = (service, client_id)
        with self._condition:
            now = time.monotonic()
            self._check_window(service, key, now)
            if service == "bc":
                self._queue_for_slot(key)
            else:
                cap = self.profile.dataverse_concurrency
                if self._active[key] >= cap:
                    raise _throttled(service, 1, concurrency=True, limit=cap)
            self._active[key] += 1
            call = [now, 0.0]
            self._calls[key].append(call)
        try:
            yield call
        finally:
            with self._condition:
                self._active[key] -= 1
                self._condition.notify_all()

    def _queue_for_slot(self, key: tuple[str, str]) -> None:
        """Business Central: wait (in a bounded queue) for one of the user's processing slots. Holds the condition."""
        p = self.profile
        if self._active[key] < p.bc_concurrency:
            return
        if self._waiting[key] >= p.bc_queue:
            raise _throttled("bc", 1, concurrency=True, limit=p.bc_concurrency + p.bc_queue)
        deadline = time.monotonic() + p.scaled(p.bc_operation_timeout_seconds)
        self._waiting[key] += 1
        try:
            while self._active[key] >= p.bc_concurrency:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ApiError(
                        503,
                        "Internal_ServiceUnavailable",
                        "The request was queued longer than the operation timeout and was cancelled.",
                        {"Retry-After": str(costs.retry_after(p.scaled(5)))},
                    )
                self._condition.wait(left)
        finally:
            self._waiting[key] -= 1


_protection: tuple[str, ServiceProtection] | None = None
_protection_lock = threading.Lock()


def protection(profile: costs.CostProfile, generation: str) -> ServiceProtection:
    """This process's limits for the stored profile; a new generation (a new profile switched on) starts afresh."""
    global _protection
    with _protection_lock:
        if _protection is None or _protection[0] != generation:
            _protection = (generation, ServiceProtection(profile))
        return _protection[1]
