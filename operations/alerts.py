"""Evaluate the alert rules: open one incident per rule and subject when its condition holds, resolve it when it no
longer does, and tell the rule's channels exactly twice (fired, resolved).

`alerts_evaluate` runs every 30 seconds (RQ cron, syncadmin/cron.py), beside the schedule tick: jobs knows nothing
of alerts. Each rule kind has a finder that returns what holds now, from aggregate queries over what jobs records.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone

from connectors.clients import open_client
from connectors.models import Connection
from connectors.resilience import QUICK_POLICY
from connectors.types import ConnectorError
from jobs.choices import JobStatus
from jobs.models import COUNTER_FIELDS, Schedule, SyncError, SyncJob
from jobs.scheduling.schedules import schedules_pause
from mappings.choices import Direction
from mappings.models import TableMapping
from operations.models import AlertRule, Incident, RuleKind
from operations.notify import AlertMessage, DeliveryFailed, deliver

logger = logging.getLogger(__name__)

# Below this many requests in the window a few retries say nothing about throttling.
THROTTLED_MIN_REQUESTS = 10
# A run "succeeded" for the no-success rule when it finished, even with some records failed (the errors rule
# watches those).
SUCCESSFUL = (JobStatus.SUCCEEDED, JobStatus.PARTLY_FAILED)
FINISHED_OUTCOMES = (JobStatus.SUCCEEDED, JobStatus.PARTLY_FAILED, JobStatus.FAILED)


@dataclass(frozen=True)
class Finding:
    """A rule's condition holds for one subject, now."""

    subject: str
    subject_name: str
    summary: str
    table_mapping: TableMapping | None = None
    connection: Connection | None = None


def alerts_evaluate(*, now: datetime | None = None) -> None:
    """Evaluate every enabled rule once; a rule that cannot be evaluated is logged and skipped."""
    now = now or timezone.now()
    for rule in AlertRule.objects.filter(enabled=True).select_related("table_mapping"):
        try:
            findings = FINDERS[RuleKind(rule.kind)](rule, now)
        except Exception:
            logger.exception("Alert rule %r could not be evaluated", rule.name)
            continue
        incidents_update(rule=rule, findings=findings, now=now)


def incidents_update(*, rule: AlertRule, findings: list[Finding], now: datetime) -> None:
    """Resolve the open incidents whose condition no longer holds, open one for each new finding, and alert."""
    firing = {finding.subject: finding for finding in findings}
    open_incidents = {incident.subject: incident for incident in rule.incidents.filter(resolved_at=None)}
    for subject, incident in open_incidents.items():
        # The conditional update lets only one of two concurrent evaluations send the "resolved" message.
        if subject not in firing and Incident.objects.filter(pk=incident.pk, resolved_at=None).update(resolved_at=now):
            incident.resolved_at = now
            logger.info("Incident resolved: %s", incident, extra={"rule": rule.name, "subject": subject})
            _alert(rule, incident, _resolved_message(rule, incident))
    for subject, finding in firing.items():
        if subject in open_incidents:
            continue
        try:
            with transaction.atomic():
                incident = Incident.objects.create(
                    rule=rule,
                    subject=subject,
                    subject_name=finding.subject_name,
                    table_mapping=finding.table_mapping,
                    connection=finding.connection,
                    summary=finding.summary,
                    opened_at=now,
                )
        except IntegrityError:
            continue  # another evaluation opened it a moment ago, and alerts for it
        if rule.pause_schedule and finding.table_mapping is not None:
            incident.schedule_paused = _pause_schedule(rule, finding)
            Incident.objects.filter(pk=incident.pk).update(schedule_paused=incident.schedule_paused)
        logger.warning(
            "Incident opened: %s: %s", incident, finding.summary, extra={"rule": rule.name, "subject": subject}
        )
        _alert(rule, incident, _firing_message(rule, incident))


def _pause_schedule(rule: AlertRule, finding: Finding) -> bool:
    # A schedule an administrator paused keeps its own reason.
    enabled = Schedule.objects.filter(table_mapping=finding.table_mapping, enabled=True)
    return bool(schedules_pause(schedules=enabled, reason=f"Alert rule {rule.name!r}: {finding.summary}"))


def _alert(rule: AlertRule, incident: Incident, message: AlertMessage) -> None:
    problems = []
    for channel in rule.channels.filter(enabled=True):
        try:
            deliver(channel, message)
        except DeliveryFailed as exc:
            logger.warning("Alert not delivered to channel %r: %s", channel.name, exc)
            problems.append(f"{channel.name}: {exc}")
    if problems:
        Incident.objects.filter(pk=incident.pk).update(delivery_problems="\n".join(problems)[:4000])


def _facts(rule: AlertRule, incident: Incident) -> dict:
    return {
        "rule": rule.name,
        "kind": rule.kind,
        "subject": incident.subject,
        "subject_name": incident.subject_name,
        "summary": incident.summary,
        "opened_at": incident.opened_at.isoformat(),
        "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
        "schedule_paused": incident.schedule_paused,
    }


def _firing_message(rule: AlertRule, incident: Incident) -> AlertMessage:
    lines = [incident.summary, f"Since {incident.opened_at:%Y-%m-%d %H:%M} UTC (rule: {rule.get_kind_display()})."]
    if incident.schedule_paused:
        lines.append(f"The schedule of {incident.subject_name} was paused; resume it once the cause is fixed.")
    return AlertMessage(
        state="firing",
        title=f"[syncadmin] {rule.name}: {incident.subject_name}",
        text="\n".join(lines),
        facts=_facts(rule, incident),
    )


def _resolved_message(rule: AlertRule, incident: Incident) -> AlertMessage:
    resolved_at = incident.resolved_at or timezone.now()  # set by the caller; the fallback only satisfies typing
    minutes = round((resolved_at - incident.opened_at).total_seconds() / 60)
    return AlertMessage(
        state="resolved",
        title=f"[syncadmin] Resolved: {rule.name}: {incident.subject_name}",
        text=f"Cleared at {resolved_at:%Y-%m-%d %H:%M} UTC after {minutes} minute(s). It was: {incident.summary}",
        facts=_facts(rule, incident),
    )


def channel_test_message(channel_name: str) -> AlertMessage:
    """What "Send a test" sends: it proves the channel works, and says so."""
    return AlertMessage(
        state="test",
        title="[syncadmin] Test alert",
        text=f"This is a test of the alert channel {channel_name!r}. Alerts of syncadmin will arrive here.",
        facts={"channel": channel_name},
    )


# -- finders: what holds now, per subject ------------------------------------------------------------------------


def _mappings(rule: AlertRule):
    mappings = TableMapping.objects.order_by("name")
    return mappings.filter(pk=rule.table_mapping_id) if rule.table_mapping_id else mappings


def _mapping_finding(mapping: TableMapping, summary: str) -> Finding:
    return Finding(subject=f"mapping:{mapping.pk}", subject_name=mapping.name, summary=summary, table_mapping=mapping)


def _latest_outcome(direction: str, field: str) -> Subquery:
    finished = SyncJob.objects.filter(
        table_mapping=OuterRef("pk"), direction=direction, dry_run=False, status__in=FINISHED_OUTCOMES
    )
    return Subquery(finished.order_by("-finished_at", "-id").values(field)[:1])


def find_failed_runs(rule: AlertRule, now: datetime) -> list[Finding]:
    """Mappings whose latest finished run failed, in either direction (a run leaves one job per direction)."""
    directions = (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE)
    annotations = {}
    for direction in directions:
        annotations[f"{direction}_status"] = _latest_outcome(direction, "status")
        annotations[f"{direction}_message"] = _latest_outcome(direction, "message")
    findings = []
    for mapping in _mappings(rule).annotate(**annotations):
        for direction in directions:
            if getattr(mapping, f"{direction}_status") == JobStatus.FAILED:
                message = getattr(mapping, f"{direction}_message") or "no reason recorded"
                label = Direction(direction).label
                findings.append(_mapping_finding(mapping, f"The last run {label.lower()} failed: {message}"[:1000]))
                break
    return findings


def find_errors(rule: AlertRule, now: datetime) -> list[Finding]:
    # Errors of the window that are still wrong: a record that failed and then synchronized raises no alert.
    errors = SyncError.objects.open().filter(created_at__gte=now - timedelta(minutes=rule.window_minutes))
    if rule.error_class:
        errors = errors.filter(error_class=rule.error_class)
    if rule.table_mapping_id:
        errors = errors.filter(table_mapping_id=rule.table_mapping_id)
    counts = errors.values("table_mapping_id").annotate(count=Count("id")).filter(count__gte=rule.threshold or 1)
    counted = {row["table_mapping_id"]: row["count"] for row in counts.order_by()}
    kind = f"{rule.get_error_class_display().lower()} " if rule.error_class else ""
    return [
        _mapping_finding(
            mapping,
            f"{counted[mapping.pk]} {kind}errors in the last {rule.window_minutes} minutes (rule: {rule.threshold}).",
        )
        for mapping in TableMapping.objects.filter(pk__in=counted).order_by("name")
    ]


def find_no_success(rule: AlertRule, now: datetime) -> list[Finding]:
    last_success = SyncJob.objects.filter(table_mapping=OuterRef("pk"), dry_run=False, status__in=SUCCESSFUL)
    mappings = _mappings(rule).annotate(
        last_success=Subquery(last_success.order_by("-finished_at").values("finished_at")[:1])
    )
    window = timedelta(minutes=rule.window_minutes)
    findings = []
    for mapping in mappings:
        since = mapping.last_success or mapping.created_at
        if now - since >= window:
            when = f"since {since:%Y-%m-%d %H:%M} UTC" if mapping.last_success else "ever"
            hours = (now - since).total_seconds() / 3600
            findings.append(_mapping_finding(mapping, f"No successful run {when} ({hours:.1f} hours)."))
    return findings


def find_stalled(rule: AlertRule, now: datetime) -> list[Finding]:
    """Running jobs whose progress (records done, and every counter) has not moved for window_minutes.

    The rule remembers, per running job, its last progress and when it first saw it (watch_state).
    """
    running = SyncJob.objects.filter(status=JobStatus.RUNNING)
    if rule.table_mapping_id:
        running = running.filter(table_mapping_id=rule.table_mapping_id)
    seen_before = rule.watch_state or {}
    seen_now = {}
    stalled_mapping_ids: dict[int, tuple[int, datetime]] = {}
    for job in running.values("pk", "table_mapping_id", "progress_done", *COUNTER_FIELDS):
        progress = job["progress_done"] + sum(job[name] for name in COUNTER_FIELDS)
        previous = seen_before.get(str(job["pk"]))
        since = datetime.fromisoformat(previous[1]) if previous and previous[0] == progress else now
        seen_now[str(job["pk"])] = [progress, since.isoformat()]
        if now - since >= timedelta(minutes=rule.window_minutes):
            stalled_mapping_ids.setdefault(job["table_mapping_id"], (job["pk"], since))
    AlertRule.objects.filter(pk=rule.pk).update(watch_state=seen_now)
    return [
        _mapping_finding(
            mapping,
            f"Sync job #{stalled_mapping_ids[mapping.pk][0]} has made no progress since "
            f"{stalled_mapping_ids[mapping.pk][1]:%Y-%m-%d %H:%M} UTC.",
        )
        for mapping in TableMapping.objects.filter(pk__in=stalled_mapping_ids).order_by("name")
    ]


def find_throttled(rule: AlertRule, now: datetime) -> list[Finding]:
    """Mappings whose jobs finished in the window retried more than P% of their requests.

    Jobs record their requests by kind (`http_requests_by_kind`, from the connectors' request counts): every attempt
    counts under its kind (read, write, token, ...), and each retry of a throttled (429) or transient answer also
    under "retry".
    """
    jobs = SyncJob.objects.filter(finished_at__gte=now - timedelta(minutes=rule.window_minutes))
    if rule.table_mapping_id:
        jobs = jobs.filter(table_mapping_id=rule.table_mapping_id)
    retries: dict[int, int] = defaultdict(int)
    requests: dict[int, int] = defaultdict(int)
    for mapping_id, by_kind in jobs.values_list("table_mapping_id", "http_requests_by_kind").order_by():
        for kind, count in (by_kind or {}).items():
            if kind == "retry":
                retries[mapping_id] += count
            else:
                requests[mapping_id] += count
    over = {
        mapping_id: (retries[mapping_id], total)
        for mapping_id, total in requests.items()
        if total >= THROTTLED_MIN_REQUESTS and retries[mapping_id] * 100 > (rule.threshold or 0) * total
    }
    return [
        _mapping_finding(
            mapping,
            f"{over[mapping.pk][0]} of {over[mapping.pk][1]} requests retried after throttled or transient answers "
            f"({100 * over[mapping.pk][0] / over[mapping.pk][1]:.0f}%, rule: above {rule.threshold}%) in the last "
            f"{rule.window_minutes} minutes.",
        )
        for mapping in TableMapping.objects.filter(pk__in=over).order_by("name")
    ]


def find_token_failures(rule: AlertRule, now: datetime) -> list[Finding]:
    """Enabled connections for which no token can be obtained: asked at most once per window_minutes each."""
    checked = dict(rule.watch_state or {})
    findings = []
    for connection in Connection.objects.filter(enabled=True).order_by("name"):
        key = f"connection:{connection.pk}"
        previous = checked.get(key)
        if previous is None or now - datetime.fromisoformat(previous[1]) >= timedelta(minutes=rule.window_minutes):
            problem = _token_problem(connection)
            checked[key] = [problem, now.isoformat()]
        problem = checked[key][0]
        if problem:
            findings.append(
                Finding(
                    subject=key,
                    subject_name=connection.name,
                    summary=f"No token can be obtained for {connection.name}: {problem}"[:1000],
                    connection=connection,
                )
            )
    AlertRule.objects.filter(pk=rule.pk).update(watch_state=checked)
    return findings


def _token_problem(connection: Connection) -> str:
    """Ask the token endpoint for a new token; return what is wrong, or "" when a token came."""
    try:
        with open_client(connection, retry_policy=QUICK_POLICY) as client:
            client.tokens.token(force_new=True)
    except ConnectorError as error:
        return error.message
    except Exception as exc:  # a token URL that cannot even be parsed, say: still an incident, not a crash
        return f"{type(exc).__name__}"
    return ""


FINDERS: dict[RuleKind, Callable[[AlertRule, datetime], list[Finding]]] = {
    RuleKind.RUN_FAILED: find_failed_runs,
    RuleKind.ERRORS: find_errors,
    RuleKind.NO_SUCCESS: find_no_success,
    RuleKind.STALLED: find_stalled,
    RuleKind.THROTTLED: find_throttled,
    RuleKind.TOKEN: find_token_failures,
}
