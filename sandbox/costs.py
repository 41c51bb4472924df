"""A cost profile: the emulated services take, in time, what the real ones take, and refuse what they refuse.

Off by default (the sandbox answers in microseconds). Switched on by `sandbox.testing.set_cost_profile(profile)` or
the `cost_profile(...)` context manager; the profile is stored as a sandbox setting, so it reaches the sandbox both
in this process (tests, in-process transport) and in a separate `runsandbox` process (`manage.py bench --costs`).

While a profile is on, every emulated request:
- is metered (requests, inner `$batch` requests, records read and written: `count_*` below, called by the
  emulators) and then held for the service time those cost, `time.sleep` outside every database transaction, so
  concurrent requests overlap as on the real services;
- passes the services' protection limits (`sandbox.faults.ServiceProtection`): Dataverse per user and web server
  over a 5-minute sliding window, Business Central per user with its queue;
- may fail on purpose (`fault_share`), deterministically for a seed.

Sources of the default numbers (protocols.md §1.15, §2.9 and §4 summarize them):
- [DP] learn.microsoft.com/power-apps/developer/data-platform/api-limits (service protection limits)
- [PR] learn.microsoft.com/power-apps/developer/data-platform/send-parallel-requests (x-ms-dop-hint)
- [BO] learn.microsoft.com/power-apps/developer/data-platform/bulk-operations (bulk messages, 1,000 per request)
- [BC] learn.microsoft.com/dynamics365/business-central/dev-itpro/administration/operational-limits-online
Times per request and per record are published nowhere; those defaults are reported measurements (marked [M]).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace

from sandbox import rows
from sandbox.metering import Meter
from sandbox.models import Setting

SETTING = "cost_profile"


@dataclass(frozen=True)
class CostProfile:
    # Wall time of the emulation = service time x time_scale: 0.01 runs the profile 100x faster, with every
    # ratio (and the sliding windows, Retry-After and timeouts) scaled alike. Limits counted in requests are not.
    time_scale: float = 1.0

    # --- Dataverse ---------------------------------------------------------------------------------------------
    # [M] A 5,000-row page of accounts takes a second or more (issue 18; community measurements of Web API reads).
    dataverse_seconds_per_request: float = 0.05
    dataverse_seconds_per_record_read: float = 0.0002
    # [M] UpsertMultiple/CreateMultiple of 1,000 standard-table records: about 4 s of server time, the example
    # protocols.md §4 works with; [BO] shows bulk messages several times faster than single writes, not a figure.
    dataverse_seconds_per_record_written: float = 0.004
    # [M] One request inside a `$batch`: its own pipeline run on the server (why [BO] prefers bulk messages).
    dataverse_seconds_per_inner_request: float = 0.01
    # [DP] per user, per web server, over a 5-minute sliding window.
    dataverse_window_seconds: float = 300
    dataverse_request_limit: int = 6000
    dataverse_execution_seconds: float = 1200  # combined execution time, inner $batch requests included
    dataverse_concurrency: int = 52
    # [PR] the recommended degree of parallelism, sent on every answer. Microsoft gives no typical value; 4 is
    # what small (trial, sandbox) environments are reported to send [M].
    dop_hint: int = 4
    dataverse_bulk_limit: int = 1000  # [BO]; sandbox.dataverse.MAX_MULTIPLE enforces it

    # --- Business Central ---------------------------------------------------------------------------------------
    # [M] API pages read at a few thousand rows a second; a $batch of 100 writes takes several seconds
    # (issue 18: writes go through the page's triggers one record at a time).
    bc_seconds_per_request: float = 0.1
    bc_seconds_per_record_read: float = 0.0001
    bc_seconds_per_record_written: float = 0.04
    bc_seconds_per_inner_request: float = 0.0  # the record's own write time covers it
    # [BC] per user: 6,000 OData requests per 5-minute sliding window; 5 processed at once, 95 more queued, then
    # 429; a request still queued after the 8-minute operation timeout is answered 503.
    bc_window_seconds: float = 300
    bc_request_limit: int = 6000
    bc_concurrency: int = 5
    bc_queue: int = 95
    bc_operation_timeout_seconds: float = 480
    bc_batch_limit: int = 100  # [BC]; sandbox.bc.MAX_BATCH enforces it
    bc_page_limit: int = 20000  # [BC]; the `page_cap:bc` setting enforces it

    # --- injected failures ----------------------------------------------------------------------------------------
    # This share of requests fails as 429, 503, a timeout or a dropped connection (sandbox.faults kinds), in an
    # order fixed by the seed. A timeout holds the socket this long (the connectors' default timeout) first.
    fault_share: float = 0.0
    fault_seed: int = 1
    fault_timeout_seconds: float = 60

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    def service_seconds(self, service: str, meter: Meter) -> float:
        """Unscaled service time of one request: what the service counts as its execution time."""
        p = "bc" if service == "bc" else "dataverse"
        return (
            getattr(self, f"{p}_seconds_per_request")
            + meter.inner * getattr(self, f"{p}_seconds_per_inner_request")
            + meter.read * getattr(self, f"{p}_seconds_per_record_read")
            + meter.written * getattr(self, f"{p}_seconds_per_record_written")
        )

    @classmethod
    def from_stored(cls, stored: dict) -> CostProfile:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})


DEFAULT = CostProfile()
PROFILES = {"default": DEFAULT}


# --- storage ------------------------------------------------------------------------------------------------------


def store(profile: CostProfile | None) -> None:
    """Switch the profile on (or off with None). A new generation tells every sandbox process to start its
    windows, queues and fault sequence afresh."""
    if profile is None:
        Setting.objects.using(rows.DB).filter(key=SETTING).delete()
    else:
        rows.set_setting(SETTING, {**asdict(profile), "generation": uuid.uuid4().hex})
    rows.set_setting(STATS_SETTING, {})


def loaded(stored: dict | None) -> tuple[CostProfile, str] | None:
    if not stored:
        return None
    return CostProfile.from_stored(stored), str(stored.get("generation", ""))


def current() -> CostProfile | None:
    found = loaded(rows.get_setting(SETTING))
    return found[0] if found else None


# --- what the sandbox answered, for the bench ------------------------------------------------------------------------

STATS_SETTING = "cost_stats"


def record_outcome(service: str, outcome: str, amount: int = 1) -> None:
    """Count one answer ("served", "throttled:<code>", "fault:<kind>") in the sandbox database, which the bench
    reads from its own process. One small write per request: requests per record are few with bulk writes.

    Also "overran" (requests whose emulation, database turn included, took longer than their service time) with
    "overran_ms": then the emulator on this machine, not the profile, set the pace."""
    stats = dict(rows.get_setting(STATS_SETTING) or {})
    per_service = dict(stats.get(service) or {})
    per_service[outcome] = per_service.get(outcome, 0) + amount
    stats[service] = per_service
    rows.set_setting(STATS_SETTING, stats)


def stats() -> dict[str, dict[str, int]]:
    return rows.get_setting(STATS_SETTING) or {}


# --- the ceiling ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ceiling:
    records_per_second: float
    bound_by: str
    bounds: dict[str, float]

    def minutes_for(self, records: int) -> float:
        return records / self.records_per_second / 60


def ceiling(
    profile: CostProfile, direction: str, *, read_page: int = 5000, bulk: int | None = None, users: int = 1
) -> Ceiling:
    """Records per second (service time, not scaled) the limits allow one run, for `users` app registrations.

    `direction` "to_dataverse" reads Business Central pages and writes Dataverse bulk messages of `bulk` records
    (default 1,000); "to_bc" reads Dataverse pages and writes Business Central `$batch`es of `bulk` (default 100).
    With t_w = time of one write request (per request + bulk x per record written + inner requests) and
    t_r = time of one page read (per request + read_page x per record read), the ceiling is the smallest of:

      Dataverse write  requests:        users x request_limit / window x bulk
                       execution time:  users x execution_seconds / window / (t_w / bulk)
                       concurrency:     users x min(concurrency, dop_hint) x bulk / t_w
      BC write         requests:        users x request_limit / window x bulk
                       concurrency:     users x concurrency (5) x bulk / t_w
      reading          one page after the other (each nextLink comes with the previous page): read_page / t_r

    Reading and writing are assumed to overlap (the next page read while the current one is written); a run that
    does not overlap them gets at most 1 / (1/read + 1/write).
    """
    if direction not in ("to_dataverse", "to_bc"):
        raise ValueError("direction must be 'to_dataverse' or 'to_bc'")
    bounds: dict[str, float] = {}
    if direction == "to_dataverse":
        bulk = bulk or profile.dataverse_bulk_limit
        t_w = profile.dataverse_seconds_per_request + bulk * profile.dataverse_seconds_per_record_written
        t_r = profile.bc_seconds_per_request + read_page * profile.bc_seconds_per_record_read
        rate = profile.dataverse_request_limit / profile.dataverse_window_seconds
        budget = profile.dataverse_execution_seconds / profile.dataverse_window_seconds
        bounds["Dataverse requests per window"] = users * rate * bulk
        bounds["Dataverse execution time"] = users * budget * bulk / t_w
        parallel = min(profile.dataverse_concurrency, profile.dop_hint)
        bounds["Dataverse concurrency (DOP hint)"] = users * parallel * bulk / t_w
        bounds["reading BC pages"] = read_page / t_r
    else:
        bulk = bulk or profile.bc_batch_limit
        t_w = profile.bc_seconds_per_request + bulk * (
            profile.bc_seconds_per_inner_request + profile.bc_seconds_per_record_written
        )
        t_r = profile.dataverse_seconds_per_request + read_page * profile.dataverse_seconds_per_record_read
        rate = profile.bc_request_limit / profile.bc_window_seconds
        bounds["BC requests per window"] = users * rate * bulk
        bounds["BC concurrency"] = users * profile.bc_concurrency * bulk / t_w
        # One page at a time spends at most 1 s of execution time a second: within the budget (4 s a second).
        bounds["reading Dataverse pages"] = read_page / t_r
    bound_by = min(bounds, key=lambda name: bounds[name])
    return Ceiling(bounds[bound_by], bound_by, bounds)


def retry_after(seconds: float) -> int:
    """Retry-After is an integer number of seconds, never 0 (a client would retry at once)."""
    return max(1, math.ceil(seconds))


@contextmanager
def cost_profile(profile: CostProfile | None = None, **changes) -> Iterator[CostProfile]:
    """Run the block under a profile (DEFAULT with `changes`), then switch it off again."""
    chosen = replace(profile or DEFAULT, **changes)
    store(chosen)
    try:
        yield chosen
    finally:
        store(None)
