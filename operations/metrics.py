"""Prometheus metrics, computed from the database (and Redis) at scrape time.

Every web process answers a scrape with the same numbers, because nothing is counted in a process's memory: a
custom collector runs a handful of aggregate queries (grouped by mapping, direction, status or class, never row by
row) each time /metrics is read. The job log keeps SYNC_JOB_RETENTION_DAYS of jobs, so totals over it are gauges
(they drop when old jobs are removed), not counters; use `delta()` on them, or the per-run logs, for rates.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db.models import Count, Max, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from connectors.models import Connection
from jobs.models import COUNTER_FIELDS, SyncError, SyncJob
from mappings.models import TableMapping
from operations import traffic
from operations.alerts import SUCCESSFUL

logger = logging.getLogger(__name__)


# A mapping's name is unique within its company: the company label (its Business Central connection; empty for a
# mapping of no company) tells apart the CUSTOMER of each company.
COMPANY = "table_mapping__company__name"


class SyncCollector:
    """What the platform team graphs and alerts on: runs, records, errors, requests, queues, lag, freshness."""

    def describe(self) -> list:
        return []  # computed at scrape time: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        yield runs_by_outcome()
        yield records_by_outcome()
        yield open_errors_by_class()
        yield from http_request_families()
        yield from queue_lengths()
        yield lag_by_mapping()
        yield seconds_since_last_success()


def runs_by_outcome() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "syncadmin_sync_runs",
        "Sync jobs in the job log, by mapping, direction and outcome (status; previews excluded).",
        labels=["mapping", "company", "direction", "outcome"],
    )
    rows = (
        SyncJob.objects.filter(dry_run=False)
        .values("table_mapping__name", COMPANY, "direction", "status")
        .annotate(count=Count("id"))
        .order_by("table_mapping__name", COMPANY, "direction", "status")
    )
    for row in rows:
        family.add_metric(
            [row["table_mapping__name"], row[COMPANY] or "", row["direction"], row["status"]], row["count"]
        )
    return family


def records_by_outcome() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "syncadmin_sync_records",
        "Records processed by the sync jobs in the job log, by mapping, direction and outcome "
        "(inserted, modified, deleted, unchanged, skipped, failed, waiting, coupled, uncoupled).",
        labels=["mapping", "company", "direction", "outcome"],
    )
    rows = (
        SyncJob.objects.filter(dry_run=False)
        .values("table_mapping__name", COMPANY, "direction")
        .annotate(**{name: Sum(name) for name in COUNTER_FIELDS})
        .order_by("table_mapping__name", COMPANY, "direction")
    )
    for row in rows:
        counts: dict[str, Any] = dict(row)  # annotated by name, which the typed values() row does not know
        for name in COUNTER_FIELDS:
            labels = [counts["table_mapping__name"], counts[COMPANY] or "", counts["direction"], name]
            family.add_metric(labels, counts[name] or 0)
    return family


def open_errors_by_class() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "syncadmin_open_errors", "Open sync errors (what is wrong now), by error class.", labels=["error_class"]
    )
    for row in SyncError.objects.open().values("error_class").annotate(count=Count("id")).order_by("error_class"):
        family.add_metric([row["error_class"]], row["count"])
    return family


def http_request_families() -> Iterator[GaugeMetricFamily]:
    """HTTP requests to Business Central and Dataverse, two ways.

    Per connection, from the request counts the connectors record at their one HTTP choke point
    (operations/traffic.py): requests in the last hour by outcome, and in the current 5-minute window against the
    service's limit. And per kind of request, from what the sync jobs of the last 24 hours recorded (read, write,
    token, retry), which needs no Redis.
    """
    connections = list(Connection.objects.values_list("pk", "kind", "name"))
    counted = traffic.traffic_read([(pk, kind) for pk, kind, _ in connections]) if connections else {}
    if counted is not None:
        last_hour = GaugeMetricFamily(
            "syncadmin_connection_requests_last_hour",
            "Requests each connection sent in the last hour: all, throttled (answered 429), retried, and token "
            "requests that failed.",
            labels=["service", "connection", "outcome"],
        )
        window = GaugeMetricFamily(
            "syncadmin_connection_requests_window",
            "Requests each connection sent in the current 5-minute window; the service allows `limit` per user.",
            labels=["service", "connection", "measure"],
        )
        for pk, kind, name in connections:
            counts = counted[pk]
            for outcome, value in (
                ("all", counts.requests_last_hour),
                ("throttled", counts.throttled_last_hour),
                ("retried", counts.retries_last_hour),
                ("token_failed", counts.token_failures_last_hour),
            ):
                last_hour.add_metric([kind, name, outcome], value)
            window.add_metric([kind, name, "requests"], counts.requests_in_window)
            window.add_metric([kind, name, "limit"], counts.limit)
        yield last_hour
        yield window
    family = GaugeMetricFamily(
        "syncadmin_http_requests",
        "HTTP requests the sync jobs finished in the last 24 hours made, by kind of request (read, write, token; "
        "retry counts requests retried after 429, 5xx or transport errors), both services together.",
        labels=["service", "status"],
    )
    totals: dict[str, int] = defaultdict(int)
    recent = SyncJob.objects.filter(finished_at__gte=timezone.now() - timedelta(hours=24))
    # A JSON object per job: summed here, from one column read (the JSON is not aggregatable on every database).
    for by_kind in recent.exclude(http_requests_by_kind={}).values_list("http_requests_by_kind", flat=True):
        for kind, count in (by_kind or {}).items():
            totals[str(kind)] += int(count)
    for kind in sorted(totals):
        family.add_metric(["all", kind], totals[kind])
    yield family


def queue_lengths() -> Iterator[GaugeMetricFamily]:
    family = GaugeMetricFamily("syncadmin_queue_jobs", "Jobs waiting in each RQ queue.", labels=["queue"])
    up = GaugeMetricFamily("syncadmin_redis_up", "1 if Redis answered this scrape, else 0.")
    try:
        for name in settings.RQ_QUEUES:
            family.add_metric([name], django_rq.get_queue(name).count)
    except Exception as exc:  # Redis down: the database metrics are still worth answering with
        logger.warning("Queue lengths unavailable: %s", type(exc).__name__)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield family
    yield up


def lag_by_mapping() -> GaugeMetricFamily:
    """Age of each side's watermark: changes there after it are not synchronized yet (an upper bound of the lag)."""
    family = GaugeMetricFamily(
        "syncadmin_mapping_lag_seconds",
        "Seconds since the watermark of the side a mapping reads (its changes after it are not synchronized yet).",
        labels=["mapping", "company", "side"],
    )
    now = timezone.now()
    for mapping in (
        TableMapping.objects.select_related("company")
        .order_by("name", "company__name")
        .only("name", "direction", "bc_watermark", "dataverse_watermark", "company__name")
    ):
        company = mapping.company.name if mapping.company else ""
        sides = []
        if mapping.syncs_to_dataverse:
            sides.append(("business_central", mapping.bc_watermark))
        if mapping.syncs_from_dataverse:
            sides.append(("dataverse", mapping.dataverse_watermark))
        for side, watermark in sides:
            if watermark is not None:
                family.add_metric([mapping.name, company, side], max(0.0, (now - watermark).total_seconds()))
    return family


def seconds_since_last_success() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "syncadmin_seconds_since_last_success",
        "Seconds since the last sync job of a mapping that finished succeeded or partly failed (absent: never).",
        labels=["mapping", "company"],
    )
    now = timezone.now()
    rows = (
        SyncJob.objects.filter(dry_run=False, status__in=SUCCESSFUL, finished_at__isnull=False)
        .values("table_mapping__name", COMPANY)
        .annotate(last=Max("finished_at"))
        .order_by("table_mapping__name", COMPANY)
    )
    for row in rows:
        labels = [row["table_mapping__name"], row[COMPANY] or ""]
        family.add_metric(labels, max(0.0, (now - row["last"]).total_seconds()))
    return family


def metrics_text() -> bytes:
    """The exposition text of one scrape."""
    registry = CollectorRegistry()
    registry.register(SyncCollector())
    return generate_latest(registry)
