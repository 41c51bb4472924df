"""Reconciliation services: the one place the admin, `manage.py reconcile`, the RQ task and the daily schedule go
through, and the bulk actions on a reconciliation's findings (each queues the sync jobs that do the work)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from coupling.existence import chunked
from coupling.models import Coupling
from jobs.choices import ACTIVE_STATUSES, JobKind, JobStatus
from jobs.models import Reconciliation, Schedule, SyncJob
from jobs.reconciliation.compare import reconcile_counts
from jobs.services import (
    SyncNotStarted,
    coupling_job_enqueue,
    sync_jobs_create,
    sync_jobs_enqueue,
    uncoupling_job_enqueue,
)
from mappings.choices import Direction
from mappings.companies import company_of
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

QUEUE = "low"
IDS_PER_QUERY = 5000


def reconciliation_enqueue(*, mapping: TableMapping, user=None, scheduled: bool = False) -> Reconciliation:
    """Queue a reconciliation of `mapping` (one at a time per mapping: an active one is returned instead)."""
    with transaction.atomic():
        active = Reconciliation.objects.filter(table_mapping=mapping, status__in=ACTIVE_STATUSES).first()
        if active:
            return active
        reconciliation = Reconciliation.objects.create(
            table_mapping=mapping,
            scheduled=scheduled,
            requested_by=user if user is not None and user.is_authenticated else None,
        )
        transaction.on_commit(
            lambda: django_rq.get_queue(QUEUE, commit_mode="auto").enqueue(
                "jobs.tasks.run_reconciliation", reconciliation.pk, job_timeout=3600
            )
        )
    return reconciliation


def reconciliation_run(*, reconciliation_id: int) -> Reconciliation:
    """Count and record one reconciliation (the worker's task and `manage.py reconcile` call this)."""
    reconciliation = Reconciliation.objects.select_related("table_mapping").get(pk=reconciliation_id)
    claimed = Reconciliation.objects.filter(pk=reconciliation.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return reconciliation
    status, message = JobStatus.SUCCEEDED, ""
    requests = 0
    counts: dict = {}
    findings: dict = {}
    try:
        with (
            open_client(company_of(reconciliation.table_mapping)) as bc_client,
            open_client(Connection.objects.active(ConnectionKind.DATAVERSE)) as dataverse_client,
        ):
            try:
                result = reconcile_counts(
                    reconciliation.table_mapping, bc_client=bc_client, dataverse_client=dataverse_client
                )
            finally:
                requests = sum((bc_client.request_counts + dataverse_client.request_counts).values())
        counts, findings = result.counts, result.as_json()
    except Exception as exc:  # a broken connection or a failing read fails the reconciliation with its reason
        logger.exception("Reconciliation %s failed", reconciliation.pk)
        status, message = JobStatus.FAILED, f"The reconciliation stopped: {exc}"
    Reconciliation.objects.filter(pk=reconciliation.pk).update(
        status=status,
        message=message,
        counts=counts,
        findings=findings,
        http_requests=requests,
        finished_at=timezone.now(),
    )
    reconciliation.refresh_from_db()
    return reconciliation


def reconciliations_run_due(now=None) -> int:
    """The daily reconciliation: each mapping with an enabled schedule, a day after its last reconciliation (or after
    the mapping was created); return how many were queued. Called by the scheduler's tick."""
    now = now or timezone.now()
    every = timedelta(hours=settings.SYNC_RECONCILE_EVERY_HOURS)
    queued = 0
    for schedule in Schedule.objects.filter(enabled=True).select_related("table_mapping"):
        mapping = schedule.table_mapping
        last = Reconciliation.objects.filter(table_mapping=mapping).order_by("-queued_at").first()
        since = last.queued_at if last else mapping.created_at
        if now - since >= every:
            reconciliation_enqueue(mapping=mapping, scheduled=True)
            queued += 1
    return queued


# -- bulk actions on the findings ----------------------------------------------------------------------------------


def _couplings(pks: list[int]) -> dict[int, Coupling]:
    """The couplings still there among `pks`, a chunk per query (SQLite takes 32,766 parameters at most)."""
    return {c.pk: c for chunk in chunked(pks, IDS_PER_QUERY) for c in Coupling.objects.filter(pk__in=chunk)}


def _orphans(reconciliation: Reconciliation) -> list[tuple[int, str]]:
    return [(int(pk), str(side)) for pk, side in (reconciliation.findings or {}).get("orphans", [])]


def reconciliation_orphan_couplings(reconciliation: Reconciliation) -> list[int]:
    """The orphan couplings still there: what uncoupling the orphans removes (its confirmation counts them)."""
    return sorted(_couplings([pk for pk, _ in _orphans(reconciliation)]))


def reconciliation_uncouple_orphans(*, reconciliation: Reconciliation, user=None) -> SyncJob | None:
    """Remove the couplings whose partner no longer exists on one side or both (an uncoupling job)."""
    existing = reconciliation_orphan_couplings(reconciliation)
    if not existing:
        return None
    return uncoupling_job_enqueue(
        mapping=reconciliation.table_mapping, coupling_ids=existing, user=user, reconciliation=reconciliation
    )


@dataclass
class OrphanSurvivors:
    """What applying the deletion policy to a reconciliation's orphans acts on (its confirmation counts these)."""

    gone_in: dict[str, list[str]]  # "bc" / "dataverse": ids of the records gone there whose partner survives
    both_gone: list[int]  # couplings whose records are gone on both sides: uncoupled


def reconciliation_orphan_survivors(reconciliation: Reconciliation) -> OrphanSurvivors:
    orphans = _orphans(reconciliation)
    couplings = _couplings([pk for pk, _ in orphans])
    survivors = OrphanSurvivors(gone_in={"bc": [], "dataverse": []}, both_gone=[])
    for pk, side in orphans:
        coupling = couplings.get(pk)
        if coupling is None:
            continue
        if side == "both":
            survivors.both_gone.append(pk)
        elif side == "bc" and coupling.bc_id:
            survivors.gone_in["bc"].append(str(coupling.bc_id))
        elif side == "dataverse" and coupling.dataverse_id:
            survivors.gone_in["dataverse"].append(str(coupling.dataverse_id))
    return survivors


# A record gone in one system is handled by the policy of the run reading that system.
DELETION_DIRECTION = {"bc": Direction.TO_DATAVERSE, "dataverse": Direction.FROM_DATAVERSE}


def reconciliation_apply_deletion_policy(*, reconciliation: Reconciliation, user=None) -> list[SyncJob]:
    """Handle each orphan's survivor per the mapping's deletion policy (delete it, restore the deleted record, uncouple,
    or report): one "confirmed deletions" job per side where records are gone, which checks once more that they are
    gone. Couplings whose records are gone on both sides are uncoupled."""
    mapping = reconciliation.table_mapping
    survivors = reconciliation_orphan_survivors(reconciliation)
    jobs: list[SyncJob] = []
    with transaction.atomic():
        for side, direction in DELETION_DIRECTION.items():
            if survivors.gone_in[side]:
                jobs += sync_jobs_create(
                    mapping=mapping,
                    kind=JobKind.DELETIONS,
                    direction=direction,
                    record_ids=survivors.gone_in[side],
                    user=user,
                    reconciliation=reconciliation,
                )
        sync_jobs_enqueue(jobs)
        if survivors.both_gone:
            jobs.append(
                uncoupling_job_enqueue(
                    mapping=mapping, coupling_ids=survivors.both_gone, user=user, reconciliation=reconciliation
                )
            )
    return jobs


def reconciliation_couple_by_match(*, reconciliation: Reconciliation, user=None) -> SyncJob:
    """Couple the uncoupled records by the mapping's match fields (match-based coupling, coupling/matching.py)."""
    return coupling_job_enqueue(mapping=reconciliation.table_mapping, user=user, reconciliation=reconciliation)


def reconciliation_drifted_records(reconciliation: Reconciliation) -> dict[str, list[str]]:
    """The source ids of the drifted pairs still coupled, by the direction the drift was found in: what
    resynchronizing the drift synchronizes (its confirmation counts them)."""
    drift = (reconciliation.findings or {}).get("drift", [])
    couplings = _couplings([d["coupling"] for d in drift])
    by_direction: dict[str, list[str]] = {}
    for item in drift:
        coupling = couplings.get(item["coupling"])
        if coupling is None:
            continue
        source_id = coupling.bc_id if item["direction"] == Direction.TO_DATAVERSE else coupling.dataverse_id
        by_direction.setdefault(item["direction"], []).append(str(source_id))
    return by_direction


def reconciliation_resync_drift(*, reconciliation: Reconciliation, user=None) -> list[SyncJob]:
    """Synchronize the drifted pairs again (a selected-records run per direction the drift was found in)."""
    by_direction = reconciliation_drifted_records(reconciliation)
    if not by_direction:
        raise SyncNotStarted("No drifted pair of this reconciliation is still coupled.")
    with transaction.atomic():
        jobs: list[SyncJob] = []
        for direction, ids in by_direction.items():
            jobs += sync_jobs_create(
                mapping=reconciliation.table_mapping,
                kind=JobKind.RECORDS,
                direction=direction,
                record_ids=ids,
                user=user,
                reconciliation=reconciliation,
            )
        sync_jobs_enqueue(jobs)
    return jobs
