"""Sync job services: the one place the admin, the RQ tasks and `manage.py sync` go through.

`sync_enqueue` creates the SyncJob rows (one per direction) and enqueues one RQ job after the database commit;
`sync_jobs_run` runs them under the mapping's lock with one pooled client per system.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta
from graphlib import TopologicalSorter

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import LockError, LockNotOwnedError

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from connectors.types import ConnectorError
from coupling.matching import NoMatchCriteria
from coupling.models import Coupling
from coupling.services import couplings_uncouple, match_based_coupling_run
from jobs import recovery, shared_sync
from jobs.choices import ACTIVE_STATUSES, ErrorClass, ErrorState, JobKind, JobStatus, RequestedVia
from jobs.engine.deletions import DeletionPass, DeletionsHeld
from jobs.engine.pipeline import DirectionRun, RunCancelled
from jobs.engine.planned import PlannedCouplings
from jobs.engine.preview import deletions_preview, empty_preview, preview_deletion_counts
from jobs.engine.reader import SourceUnreadable
from jobs.engine.sides import run_directions, sides_for
from jobs.models import COUNTER_FIELDS, SyncError, SyncJob
from jobs.signals import sync_jobs_finished
from jobs.uncoupling import records_uncouple
from mappings.choices import Direction, UpdateConflictResolution
from mappings.companies import company_of, dataverse_company_row
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

QUEUE = "default"

WORKER_STOPPED = "The worker stopped before the run finished (killed or crashed)."


class SyncNotStarted(Exception):
    """The sync could not be enqueued; the message says why."""


def sync_jobs_create(
    *,
    mapping: TableMapping,
    kind: str = JobKind.MODIFIED,
    user=None,
    direction: str | None = None,
    record_ids: list | None = None,
    dry_run: bool = False,
    via: str = RequestedVia.USER,
    reconciliation=None,
) -> list[SyncJob]:
    """Create one queued SyncJob per direction the run covers (To Dataverse first, as Business Central).

    `reconciliation`: the reconciliation whose bulk action asks for the run (the job then says so and links to it).
    """
    directions = [direction] if direction else run_directions(mapping)
    if kind == JobKind.RECORDS and not record_ids:
        raise SyncNotStarted("Select at least one record to synchronize.")
    if kind == JobKind.RECORDS and len(directions) != 1:
        raise SyncNotStarted(f"{mapping.name} is bidirectional: choose the direction to synchronize the records in.")
    if not mapping.field_mappings.filter(enabled=True).exists():
        raise SyncNotStarted(f"{mapping.name} has no enabled field mappings: there is nothing to synchronize.")
    if kind == JobKind.RECORDS and not dry_run:
        # "Synchronize now" in one direction on pairs never synchronized: that direction holds until it succeeds,
        # even if this run fails (e.g. on a lookup not coupled yet) and a scheduled run comes first.
        source_attr = "bc_id" if directions[0] == Direction.TO_DATAVERSE else "dataverse_id"
        Coupling.objects.filter(
            table_mapping=mapping, **{f"{source_attr}__in": [i for i in (record_ids or []) if i]}
        ).choose_first_direction(directions[0])
    return [
        SyncJob.objects.create(
            kind=kind,
            table_mapping=mapping,
            direction=d,
            requested_by=_user(user),
            requested_via=RequestedVia.RECONCILIATION if reconciliation else via,
            reconciliation=reconciliation,
            record_ids=[str(i) for i in (record_ids or [])],
            dry_run=dry_run,
        )
        for d in directions
    ]


def sync_enqueue(
    *,
    mapping: TableMapping,
    kind: str = JobKind.MODIFIED,
    user=None,
    direction: str | None = None,
    record_ids: list | None = None,
    dry_run: bool = False,
    with_dependencies: bool = False,
    via: str = RequestedVia.USER,
) -> list[SyncJob]:
    """Create the SyncJobs of one mapping run and enqueue it after the transaction commits.

    `with_dependencies` first runs the mappings this one depends on (modified records, in dependency order), in
    the same RQ job: Business Central enforces dependency order only in a full synchronization, so a customer
    synchronized before its currency is coupled fails; here the currency goes first.
    """
    with transaction.atomic():
        jobs, refused = sync_jobs_create_in_order(
            mappings=[mapping],
            kind=kind,
            user=user,
            direction=direction,
            record_ids=record_ids,
            dry_run=dry_run,
            with_dependencies=with_dependencies,
            via=via,
        )
        if mapping.name in refused:
            raise SyncNotStarted(refused[mapping.name])
        sync_jobs_enqueue(jobs)
    return jobs


def sync_jobs_create_in_order(
    *,
    mappings: list[TableMapping],
    kind: str = JobKind.MODIFIED,
    user=None,
    direction: str | None = None,
    record_ids: list | None = None,
    dry_run: bool = False,
    with_dependencies: bool = False,
    via: str = RequestedVia.USER,
) -> tuple[list[SyncJob], dict[str, str]]:
    """The SyncJobs of several mappings, in dependency order, each dependency once; and why any was not started.

    With `with_dependencies`, a mapping the chosen ones depend on runs first (modified records), unless it was chosen
    itself: the chosen options (kind, direction, records) apply to the chosen mappings only.
    """
    ordered = sync_chain(mappings=mappings, with_dependencies=with_dependencies)
    jobs, refused = [], {}
    for mapping, is_dependency in ordered:
        options = (
            {"kind": JobKind.MODIFIED}
            if is_dependency
            else {"kind": kind, "direction": direction, "record_ids": record_ids}
        )
        try:
            jobs += sync_jobs_create(mapping=mapping, user=user, dry_run=dry_run, via=via, **options)
        except SyncNotStarted as exc:
            if is_dependency:  # as in sync_enqueue: a dependency with nothing to run is no reason to stop
                logger.info("Not synchronizing dependency %s: %s", mapping.name, exc)
            else:
                refused[mapping.name] = str(exc)
    return jobs, refused


def sync_chain(*, mappings: list[TableMapping], with_dependencies: bool = False) -> list[tuple[TableMapping, bool]]:
    """The mappings a run of `mappings` covers, in dependency order, each once: (mapping, is a dependency only)."""
    chosen = {m.pk for m in mappings}
    in_order = mappings_in_dependency_order()  # one query, dependencies prefetched
    needed = set(chosen)
    if with_dependencies:
        by_pk = {m.pk: m for m in in_order}
        todo = list(chosen)
        while todo:
            for dependency in by_pk[todo.pop()].dependencies.all():
                if dependency.pk not in needed:
                    needed.add(dependency.pk)
                    todo.append(dependency.pk)
    return [(m, m.pk not in chosen) for m in in_order if m.pk in needed]


# A run's confirmation shows a preview made for it; the run is refused when that preview is older than this, or when
# anything it read may have changed since (sync_previews_outdated).
PREVIEW_VALID_MINUTES = 15


def sync_chain_jobs(*, mappings: list[TableMapping], kind: str, with_dependencies: bool) -> list[tuple[int, str, str]]:
    """The jobs a run of `mappings` makes, as (mapping id, direction, kind), in order (as sync_jobs_create_in_order
    makes them: a dependency runs modified records, a mapping without enabled field mappings is left out)."""
    chain = []
    for mapping, is_dependency in sync_chain(mappings=mappings, with_dependencies=with_dependencies):
        if mapping.field_mappings.filter(enabled=True).exists():
            job_kind = JobKind.MODIFIED if is_dependency else kind
            chain += [(mapping.pk, direction, job_kind) for direction in run_directions(mapping)]
    return chain


def sync_previews_start(
    *, mappings: list[TableMapping], kind: str, with_dependencies: bool, user=None, again: bool = False
) -> tuple[list[SyncJob], dict[str, str]]:
    """The previews a run's confirmation shows: the very jobs the run would make, as a dry run.

    Opening the same confirmation again shows the user's latest previews of this run while they are still running or
    still hold (sync_previews_outdated), so reopening a page does not queue another set each time. Otherwise (or with
    `again`, "Preview again") they are queued anew, and the user's earlier finished previews of these jobs, which
    no confirmation can use any more, are removed: the sync job list keeps one set of previews per run, not a log."""
    chain = sync_chain_jobs(mappings=mappings, kind=kind, with_dependencies=with_dependencies)
    if not again:
        latest = _latest_previews(user=user, chain=chain)
        if latest and _previews_reusable(latest, mappings=mappings, kind=kind, with_dependencies=with_dependencies):
            return latest, {}
    previews, refused = sync_enqueue_many(
        mappings=mappings, kind=kind, user=user, dry_run=True, with_dependencies=with_dependencies
    )
    if previews:
        _remove_superseded_previews(user=user, chain=chain, before=min(p.pk for p in previews))
    return previews, refused


def _user_previews(user):
    return SyncJob.objects.filter(
        requested_by=_user(user), dry_run=True, requested_via=RequestedVia.USER, reconciliation__isnull=True
    )


def _latest_previews(*, user, chain: list[tuple[int, str, str]]) -> list[SyncJob]:
    """The user's newest previews that are exactly the jobs of `chain`, made together ([] if none).

    A chain's previews are made in one transaction, in order, so they are the user's consecutive previews ending
    with the chain's last job; a set mixed from several confirmations would not plan the later mappings with the
    couplings the earlier ones would make (jobs.engine.planned)."""
    if _user(user) is None or not chain:
        return []
    mapping_id, direction, kind = chain[-1]
    last = (
        _user_previews(user)
        .filter(table_mapping_id=mapping_id, direction=direction, kind=kind)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    if last is None:
        return []
    previews = list(
        _user_previews(user).filter(pk__lte=last).select_related("table_mapping").order_by("-pk")[: len(chain)]
    )[::-1]
    if [(p.table_mapping_id, p.direction, p.kind) for p in previews] != chain or any(p.record_ids for p in previews):
        return []
    return previews


def _previews_reusable(previews: list[SyncJob], **run) -> bool:
    """Whether a confirmation may show these previews again: still running (not stuck in the queue for longer than a
    preview is valid), or finished and still holding."""
    if any(p.status in ACTIVE_STATUSES for p in previews):
        oldest = min(p.queued_at for p in previews)
        return timezone.now() - oldest <= timedelta(minutes=PREVIEW_VALID_MINUTES)
    return not sync_previews_outdated(preview_ids=[p.pk for p in previews], **run)


def _remove_superseded_previews(*, user, chain: list[tuple[int, str, str]], before: int) -> int:
    """Delete the user's finished previews of the chain's jobs made before `before` (running ones finish first)."""
    if _user(user) is None:
        return 0
    same_jobs = Q(pk__in=[])
    for mapping_id, direction, kind in chain:
        same_jobs |= Q(table_mapping_id=mapping_id, direction=direction, kind=kind)
    superseded = (
        _user_previews(user).filter(same_jobs, pk__lt=before, record_ids=[]).exclude(status__in=ACTIVE_STATUSES)
    )
    deleted, _ = superseded.delete()
    return deleted


def sync_previews_outdated(
    *, preview_ids: list[int], mappings: list[TableMapping], kind: str, with_dependencies: bool, now=None
) -> str:
    """Why the previews a confirmation showed no longer say what a run of `mappings` would do ("" when they do).

    They must be the run's own jobs, previewed, all finished and succeeded, at most PREVIEW_VALID_MINUTES old, and
    nothing they read may have changed since they started: no run of their mappings since, no edit of the mappings,
    and no record modified since in either system under the mappings' filters (one `$top=1` request per system and
    mapping, as the schedules' change check).
    """
    now = now or timezone.now()
    previews = list(
        SyncJob.objects.filter(pk__in=preview_ids, dry_run=True).select_related("table_mapping").order_by("pk")
    )
    chain = sync_chain_jobs(mappings=mappings, kind=kind, with_dependencies=with_dependencies)
    if len(previews) != len(set(preview_ids)) or [(p.table_mapping_id, p.direction, p.kind) for p in previews] != chain:
        return "The preview shown is not a preview of this run (the mappings, their directions or fields changed)."
    unfinished = [p for p in previews if p.status in ACTIVE_STATUSES]
    if unfinished:
        return f"The preview is not finished yet (job #{unfinished[0].pk}): wait for its counts."
    failed = [p for p in previews if p.status != JobStatus.SUCCEEDED]
    if failed:
        job = failed[0]
        status = job.get_status_display().lower()
        return f"The preview job #{job.pk} of {job.table_mapping.name} {status}: {job.message}"
    started = min(p.started_at for p in previews)
    if now - started > timedelta(minutes=PREVIEW_VALID_MINUTES):
        return f"The preview is more than {PREVIEW_VALID_MINUTES} minutes old."
    mapping_ids = {p.table_mapping_id for p in previews}
    edited = TableMapping.objects.filter(pk__in=mapping_ids, updated_at__gt=started).first()
    if edited:
        return f"{edited.name} was edited after the preview started."
    ran = (
        SyncJob.objects.filter(table_mapping__in=mapping_ids, dry_run=False)
        .filter(Q(started_at__gte=started) | Q(status__in=ACTIVE_STATUSES))
        .select_related("table_mapping")
        .first()
    )
    if ran:
        return f"Job #{ran.pk} of {ran.table_mapping.name} ran (or is queued) after the preview started."
    return _changed_since_preview(previews)


def _changed_since_preview(previews: list[SyncJob]) -> str:
    """Whether a record the previews' mappings read was modified in either system after its preview started."""
    try:
        dataverse_client = open_client(Connection.objects.active(ConnectionKind.DATAVERSE))
    except Exception as exc:
        return f"Could not connect to check for changes since the preview: {exc}"
    companies = CompanyClients(dataverse_client)
    try:
        seen = set()
        for preview in previews:
            mapping = preview.table_mapping
            if mapping.pk in seen:
                continue
            seen.add(mapping.pk)
            bc_client = companies.client_for(mapping, preview=True)
            for client, (side, _) in (
                (bc_client, sides_for(mapping, Direction.TO_DATAVERSE)),
                (dataverse_client, sides_for(mapping, Direction.FROM_DATAVERSE)),
            ):
                moment = client.server_time_at(preview.started_at)
                if client.changed_after(side.entity_set, moment, filter=side.table_filter or None):
                    return f"{side.label} {side.entity_set} changed after the preview of {mapping.name} started."
    except ConnectorError as exc:
        return f"Could not check for changes since the preview: {exc}"
    finally:
        companies.close()
        dataverse_client.close()
    return ""


def sync_jobs_enqueue(jobs: list[SyncJob]) -> None:
    """Run these jobs in turn, one RQ job per company, queued when the current transaction commits (nothing if empty).

    Each company's jobs keep their order (dependencies are within a company); companies run side by side on as many
    workers as there are, so one company's long or failing run does not hold up another's.
    """
    by_company: dict[int | None, list[int]] = {}
    for job in jobs:
        by_company.setdefault(job.table_mapping.company_id, []).append(job.pk)
    for job_ids in by_company.values():
        transaction.on_commit(lambda job_ids=job_ids: _enqueue(job_ids))


def sync_enqueue_many(
    *,
    mappings: list[TableMapping],
    kind: str = JobKind.MODIFIED,
    user=None,
    dry_run: bool = False,
    with_dependencies: bool = False,
) -> tuple[list[SyncJob], dict[str, str]]:
    """Queue several mappings in dependency order, each dependency once, as one RQ job that runs them in turn.

    Returns the jobs and, by mapping name, why a chosen mapping was not started; the others start all the same.
    """
    with transaction.atomic():
        jobs, refused = sync_jobs_create_in_order(
            mappings=mappings, kind=kind, user=user, dry_run=dry_run, with_dependencies=with_dependencies
        )
        sync_jobs_enqueue(jobs)
    return jobs, refused


def sync_enqueue_all(
    *,
    kind: str = JobKind.MODIFIED,
    user=None,
    dry_run: bool = False,
    names: list[str] | None = None,
    company: Connection | None = None,
) -> list[SyncJob]:
    """Queue every mapping (or the named ones; of one company, or of every company), in dependency order, as one RQ
    job per company that runs its mappings in turn."""
    mappings = [
        m
        for m in mappings_in_dependency_order()
        if (names is None or m.name in names) and (company is None or m.company_id == company.pk)
    ]
    jobs, refused = sync_enqueue_many(mappings=mappings, kind=kind, user=user, dry_run=dry_run)
    for name, reason in refused.items():
        logger.info("Not synchronizing %s: %s", name, reason)
    return jobs


def mappings_in_dependency_order() -> list[TableMapping]:
    """All table mappings, each after the mappings it depends on (ties by name)."""
    mappings = {m.pk: m for m in TableMapping.objects.prefetch_related("dependencies")}
    sorter = TopologicalSorter({pk: {d.pk for d in m.dependencies.all()} for pk, m in mappings.items()})
    sorter.prepare()
    ordered = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda pk: mappings[pk].name)
        ordered.extend(mappings[pk] for pk in ready)
        sorter.done(*ready)
    return ordered


def _enqueue(job_ids: list[int]) -> None:
    # Called from transaction.on_commit already, so the queue must enqueue now ("auto"), not defer again.
    rq_job = django_rq.get_queue(QUEUE, commit_mode="auto").enqueue(
        "jobs.tasks.run_sync_jobs", job_ids, job_timeout=6 * 3600
    )
    SyncJob.objects.filter(pk__in=job_ids).update(rq_job_id=rq_job.id)


def sync_deletions_confirm(*, job: SyncJob, user=None) -> SyncJob:
    """An administrator confirms the deletions a run held back (the safety stop, jobs/engine/deletions.py).

    A "confirmed deletions" job carries them out, past the safety stop, for the records still gone when it runs.
    Each held set is confirmed once.
    """
    if not job.held_deletions:
        raise SyncNotStarted(f"Job #{job.pk} holds no deletions to confirm.")
    with transaction.atomic():
        claimed = SyncJob.objects.filter(pk=job.pk, deletions_confirmed_at__isnull=True).update(
            deletions_confirmed_at=timezone.now()
        )
        if not claimed:
            raise SyncNotStarted(f"The deletions held by job #{job.pk} were confirmed already.")
        (confirmed,) = sync_enqueue(
            mapping=job.table_mapping,
            kind=JobKind.DELETIONS,
            direction=job.direction,
            record_ids=list(job.held_deletions),
            user=user,
        )
    return confirmed


def sync_job_cancel(*, job: SyncJob) -> None:
    """Ask a queued or running job to stop; the engine checks between pages."""
    SyncJob.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(cancel_requested=True)
    # Only a job still queued is cancelled here; a running one stops at its next page.
    SyncJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled before it started."
    )


@contextmanager
def mapping_lock(mapping: TableMapping, *, wait: float = 5):
    """One run per mapping at a time, across workers and machines.

    The lock expires SYNC_LOCK_TIMEOUT_SECONDS after its holder stopped renewing it (a live run renews it on every
    page). A worker waits `wait` seconds for it and then gives up (a scheduled run simply comes again); the command
    line waits long enough to outlast the lock of a worker that died.
    """
    timeout = settings.SYNC_LOCK_TIMEOUT_SECONDS
    lock = django_rq.get_connection(QUEUE).lock(
        mapping_lock_key(mapping.pk), timeout=timeout, blocking=True, blocking_timeout=wait
    )
    if not lock.acquire():
        yield None
        return
    try:
        yield lock
    finally:
        try:
            lock.release()
        except LockError:
            logger.warning("The run lock of %s expired before the run ended.", mapping.name)


def mapping_lock_key(mapping_id: int) -> str:
    return f"syncadmin:mapping-run:{mapping_id}"


def sync_jobs_run(*, job_ids: list[int], on_progress=None, lock_wait: float = 5) -> None:
    """Run the given SyncJobs in order: per mapping, its directions one after the other under the mapping's lock."""
    jobs = list(SyncJob.objects.filter(pk__in=job_ids).select_related("table_mapping__company").order_by("pk"))
    if not jobs:
        return
    try:
        dataverse_client = open_client(Connection.objects.active(ConnectionKind.DATAVERSE))
    except Exception as exc:  # a missing or broken connection fails the run with its reason
        _finish_all(jobs, JobStatus.FAILED, f"Could not connect: {exc}")
        _announce_finished(jobs)
        return
    # Previews in this chain plan each mapping as if the earlier ones had run: their couplings count for the later.
    planned = PlannedCouplings()
    companies = CompanyClients(dataverse_client)
    try:
        for mapping_jobs in _grouped_by_mapping(jobs):
            mapping = mapping_jobs[0].table_mapping
            try:
                bc_client = companies.client_for(mapping, preview=all(job.dry_run for job in mapping_jobs))
            except Exception as exc:  # this company's connection only: the other companies' runs go on
                _finish_all(mapping_jobs, JobStatus.FAILED, f"{mapping.name} did not start: {exc}")
                continue
            for job in mapping_jobs:
                job.table_mapping = mapping  # one instance, which knows its company's row in Dataverse
            with mapping_lock(mapping, wait=lock_wait) as lock:
                if lock is not None:
                    _fail_abandoned_runs(mapping, job_ids)
                if lock is None:
                    _finish_all(
                        mapping_jobs, JobStatus.CANCELLED, f"Another run of {mapping.name} is in progress; not started."
                    )
                    continue
                todo = list(mapping_jobs)
                while todo:
                    job = todo.pop(0)
                    job.refresh_from_db()
                    if job.status == JobStatus.QUEUED:
                        # Restores of deleted records run next, under the same lock (jobs/engine/deletions.py).
                        follow_ups = _run_one(job, bc_client, dataverse_client, lock, on_progress, planned)
                        for follow_up in follow_ups:
                            follow_up.table_mapping = mapping
                        todo[:0] = follow_ups
                        jobs.extend(follow_ups)
    finally:
        companies.close()
        dataverse_client.close()
        _announce_finished(jobs)


class CompanyClients:
    """One Business Central client per company a run list touches, opened on first use; and each company's row in
    Dataverse, found or created before a mapping that stamps it runs."""

    def __init__(self, dataverse_client) -> None:
        self.dataverse_client = dataverse_client
        self._clients: dict[int, object] = {}

    def client_for(self, mapping: TableMapping, *, preview: bool = False):
        company = company_of(mapping)
        if mapping.stamps_company:
            try:
                # A preview only looks: before the first run there is no row, and the preview plans as the
                # run would see Dataverse until then (rows of no company).
                dataverse_company_row(company, self.dataverse_client, create=not preview)
            except ConnectorError as exc:
                raise ConnectorError(
                    exc.kind,
                    f"the row of {company.name} in Dataverse's company table (cdm_companies) could not be read or "
                    f"created: {exc.message}. Is Business Central's integration solution installed? Without it, clear "
                    f"the Dataverse company column of {mapping.name}.",
                    status=exc.status,
                ) from exc
        if company.pk not in self._clients:
            self._clients[company.pk] = open_client(company)
        return self._clients[company.pk]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()  # type: ignore[attr-defined]


def _announce_finished(jobs: list[SyncJob]) -> None:
    # Scheduling builds on this module and listens (jobs.scheduling.signals): it records the outcome of its runs.
    sync_jobs_finished.send(sender=SyncJob, jobs=jobs)


def _fail_abandoned_runs(mapping: TableMapping, current_job_ids: list[int]) -> None:
    """Runs of this mapping still marked running while we hold its lock have lost their worker (or, alive but
    stalled past the lock's expiry, their right to go on: they stop at their next page).

    Normally the scheduler's tick has failed and resumed them long before their lock expired (sync_runs_recover);
    this is for an installation whose scheduler is not running. They are not resumed: this run is the later one.
    """
    running = SyncJob.objects.filter(table_mapping=mapping, status=JobStatus.RUNNING).exclude(pk__in=current_job_ids)
    for job_id in running.values_list("pk", flat=True):
        _claim_stopped(job_id, f"{WORKER_STOPPED} A later run picks up its records.")


def _claim_stopped(job_id: int, message: str) -> bool:
    """Mark a running job whose worker stopped as failed; False if it finished (or was claimed) meanwhile."""
    claimed = SyncJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, finished_at=timezone.now(), message=message
    )
    if claimed:
        shared_sync.SharedPages(job_id).discard()
    return bool(claimed)


def sync_runs_recover() -> list[SyncJob]:
    """Finish the runs whose worker stopped (killed or crashed): the scheduler's tick calls this every 30 seconds.

    A running job without a heartbeat (jobs/recovery.py) is marked failed, the mapping lock it held is released (only
    if it still holds it), and the run is resumed once, by a new job linked to it (`resumed_from`). The new job starts
    again from the run's checkpoint: the mapping's watermark, which only moves when a run ends, so a modified-records
    run reads the same changes again and a full synchronization reads every page again. Reading again is safe: the
    dead run's inserts hold reserved couplings, which the new run completes instead of inserting twice, and counts as
    its inserts. The jobs the same RQ job had not reached yet are queued again behind it. A resumed run whose worker
    stops too is not resumed again (a record that kills its worker must not kill one every minute).
    Returns the new jobs.
    """
    running = list(SyncJob.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True))
    resumed = []
    for job in SyncJob.objects.filter(pk__in=recovery.without_heartbeat(running)).order_by("pk"):
        with transaction.atomic():
            if not _claim_stopped(job.pk, WORKER_STOPPED):
                continue
            recovery.release_if_held(mapping_lock_key(job.table_mapping_id), job.lock_token)
            new_job = _resume(job)
            waiting = []
            if job.rq_job_id:  # the rest of its RQ job, which died with it
                waiting = list(SyncJob.objects.filter(rq_job_id=job.rq_job_id, status=JobStatus.QUEUED).order_by("pk"))
            sync_jobs_enqueue(([new_job] if new_job else []) + waiting)
        logger.warning("Sync job %s lost its worker; %s", job.pk, f"resumed as #{new_job.pk}" if new_job else "failed")
        if new_job:
            resumed.append(new_job)
    return resumed


def _resume(job: SyncJob) -> SyncJob | None:
    if job.cancel_requested:
        SyncJob.objects.filter(pk=job.pk).update(message=f"{WORKER_STOPPED} Not resumed: it was being cancelled.")
        return None
    if job.resumed_from_id is not None:
        SyncJob.objects.filter(pk=job.pk).update(
            message=f"{WORKER_STOPPED} Not resumed again: it resumed job #{job.resumed_from_id} already."
        )
        return None
    new_job = SyncJob.objects.create(
        kind=job.kind,
        table_mapping_id=job.table_mapping_id,
        direction=job.direction,
        requested_by_id=job.requested_by_id,
        requested_via=RequestedVia.RECOVERY,
        record_ids=job.record_ids,
        dry_run=job.dry_run,
        resumed_from=job,
    )
    SyncJob.objects.filter(pk=job.pk).update(message=f"{WORKER_STOPPED} Resumed as job #{new_job.pk}.")
    return new_job


def _grouped_by_mapping(jobs: list[SyncJob]) -> list[list[SyncJob]]:
    groups: list[list[SyncJob]] = []
    for job in jobs:
        if groups and groups[-1][0].table_mapping_id == job.table_mapping_id:
            groups[-1].append(job)
        else:
            groups.append([job])
    return groups


def _run_one(job: SyncJob, bc_client, dataverse_client, lock, on_progress=None, planned=None) -> list[SyncJob]:
    """Run one job; return the jobs it asks to run right after it (restores of deleted records)."""
    # The heartbeat beats from before the job shows as running until after it shows as finished.
    with recovery.RunHeartbeat(job.pk):
        return _run_one_alive(job, bc_client, dataverse_client, lock, on_progress, planned)


def _run_one_alive(job: SyncJob, bc_client, dataverse_client, lock, on_progress=None, planned=None) -> list[SyncJob]:
    token = lock.local.token
    started = SyncJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING,
        started_at=timezone.now(),
        lock_token=token.decode() if isinstance(token, bytes) else token,
    )
    if not started:
        return []  # cancelled meanwhile
    logger.info(
        "Sync job %s started: %s %s (%s)",
        job.pk,
        job.table_mapping.name,
        job.direction,
        job.kind,
        extra={
            "event": "run_start",
            "job": job.pk,
            "mapping": job.table_mapping.name,
            "direction": job.direction,
            "kind": job.kind,
            "dry_run": job.dry_run,
        },
    )
    requests = RequestTally(bc_client, dataverse_client)
    status, message = JobStatus.SUCCEEDED, ""
    follow_ups: list[SyncJob] = []
    try:
        if job.kind == JobKind.COUPLING:
            message = _run_match_coupling(job, bc_client, dataverse_client)
        elif job.kind == JobKind.UNCOUPLING:
            message = _run_uncoupling(job, dataverse_client)
        else:
            follow_ups = _run_sync(job, bc_client, dataverse_client, lock, on_progress, planned, requests)
    except RunCancelled as exc:
        status, message = JobStatus.CANCELLED, str(exc) or "Cancelled by a user."
    except (SourceUnreadable, NoMatchCriteria, DeletionsHeld) as exc:
        status, message = JobStatus.FAILED, str(exc)
    except Exception as exc:
        logger.exception("Sync job %s crashed", job.pk)
        status, message = JobStatus.FAILED, f"The run stopped on an internal error: {exc}"
        # The run's earlier stop (an error naming no record) is replaced by this one: one open error per cause.
        SyncError.objects.of_run(job.table_mapping_id, job.direction).close(ErrorState.SUPERSEDED, job_id=job.pk)
        SyncError.objects.create(
            job=job,
            table_mapping=job.table_mapping,
            direction=job.direction,
            error_class="internal",
            message=message,
            detail=traceback.format_exc()[-4000:],
        )
    job.refresh_from_db(fields=[*COUNTER_FIELDS, "message"])
    if status == JobStatus.SUCCEEDED and job.failed:
        # Partly failed when some records went through; when none did, the run failed.
        status = JobStatus.FAILED if job.every_record_failed else JobStatus.PARTLY_FAILED
    finished_whole = job.kind in (JobKind.MODIFIED, JobKind.FULL) and not job.dry_run
    if status in (JobStatus.SUCCEEDED, JobStatus.PARTLY_FAILED) and finished_whole:
        # A whole run that went through ends the stop of an earlier run (errors of records close record by record).
        SyncError.objects.of_run(job.table_mapping_id, job.direction).close(ErrorState.RESOLVED_BY_SYNC, job_id=job.pk)
    used = requests.used()
    # Counters were added page by page (also by helper workers): touch only what this function owns. A job that
    # recovery took as stopped (its heartbeat lapsed, e.g. the process was frozen) keeps what recovery said.
    SyncJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=status,
        message=message or job.message,
        finished_at=timezone.now(),
        http_requests=F("http_requests") + requests.unreported(used),
        http_requests_by_kind=dict(used),
    )
    return follow_ups


class RequestTally:
    """The requests a run makes through its two clients, added to its job's count page by page (`on_page`), so the
    job page's figure is live while it runs; the rest is added when the run ends. Helper workers of a shared full
    synchronization add theirs to the same count, hence deltas, never the total."""

    def __init__(self, bc_client, dataverse_client):
        self.clients = (bc_client, dataverse_client)
        self.before = self._counts()
        self.reported = 0

    def _counts(self) -> Counter[str]:
        return sum((Counter(client.request_counts) for client in self.clients), Counter())

    def used(self) -> Counter[str]:
        return self._counts() - self.before

    def unreported(self, used: Counter[str]) -> int:
        """The requests of `used` not added to the job's count yet (and taken as added)."""
        delta = max(0, sum(used.values()) - self.reported)
        self.reported += delta
        return delta

    def live(self) -> dict:
        """The update that brings the job's request figures up to date between pages ({} if they cannot be read
        now: a request on another thread (read-ahead, parallel writes) added a kind while they were copied)."""
        try:
            used = self.used()
        except RuntimeError:
            return {}
        return {"http_requests": F("http_requests") + self.unreported(used), "http_requests_by_kind": dict(used)}


def _run_sync(
    job: SyncJob, bc_client, dataverse_client, lock, on_progress, planned=None, requests: RequestTally | None = None
) -> list[SyncJob]:
    # Deletions first: a held deletion (the safety stop) fails the run before anything is written.
    deletions = DeletionPass(job, bc_client=bc_client, dataverse_client=dataverse_client)
    follow_ups = deletions.run()
    if job.kind == JobKind.DELETIONS:
        return follow_ups
    deleted = (
        deletions_preview(job.table_mapping, job.direction, deletions.previewed, retrying=deletions.retrying)
        if job.dry_run
        else None
    )
    if deleted is not None and deleted["held"]:
        # As the run would: the safety stop holds the deletions and the run stops before its pages.
        SyncJob.objects.filter(pk=job.pk).update(
            preview={**empty_preview(), "deletions": deleted},
            message=f"The safety stop would hold the {deleted['found']} deletion(s) found: the run would stop before "
            "reading or writing anything, until an administrator confirms them.",
        )
        return follow_ups
    run = DirectionRun(
        job,
        bc_client=bc_client,
        dataverse_client=dataverse_client,
        on_page=lambda: _on_page(job, lock, on_progress, requests),
        planned=planned,
    )
    if job.kind == JobKind.FULL and not job.dry_run:
        shared_sync.coordinate(run, job.pk, enqueue_helpers=lambda count: _enqueue_helpers(job.pk, count))
        outcome = run.finish()
    else:
        outcome = run.run()
    if deleted is not None:
        if deleted["found"]:
            outcome.preview["deletions"] = deleted
            preview_deletion_counts(outcome.preview, deleted)
        # The run reads each deletion it handles as a record (a held one stopped the preview above): so does this.
        SyncJob.objects.filter(pk=job.pk).update(
            preview=outcome.preview, progress_done=F("progress_done") + deleted["found"]
        )
    elif job.kind in (JobKind.MODIFIED, JobKind.FULL):
        _advance_watermark(job, outcome.latest_modified)
    return follow_ups


def _enqueue_helpers(job_id: int, count: int) -> None:
    queue = django_rq.get_queue(QUEUE, commit_mode="auto")
    for _ in range(count):
        queue.enqueue("jobs.tasks.help_shared_sync", job_id, job_timeout=6 * 3600)


def shared_sync_help(*, job_id: int) -> int:
    """Process pages of a running full synchronization that another worker coordinates; return how many."""
    job = SyncJob.objects.select_related("table_mapping").filter(pk=job_id, status=JobStatus.RUNNING).first()
    if job is None:
        return 0
    with open_client(Connection.objects.active(ConnectionKind.DATAVERSE)) as dataverse_client:
        companies = CompanyClients(dataverse_client)
        bc_client = companies.client_for(job.table_mapping)
        run = DirectionRun(job, bc_client=bc_client, dataverse_client=dataverse_client)
        try:
            return shared_sync.help_with(run, job_id)
        except RunCancelled:
            return 0
        finally:
            used = bc_client.request_counts + dataverse_client.request_counts
            companies.close()
            SyncJob.objects.filter(pk=job_id).update(http_requests=F("http_requests") + sum(used.values()))


def _close_settled_ambiguous_errors(job: SyncJob, outcome) -> int:
    """Errors are what is wrong now: a record this match-based coupling job coupled, or found matching no record any
    more, is no longer an ambiguous match, so its open "ambiguous match" errors close (resolved by this job). Those
    still ambiguous stay open. Returns how many closed."""
    bc_ids = [bc.id for bc, _ in outcome.pairs] + [record.id for record in outcome.unmatched_bc]
    dataverse_ids = [dv.id for _, dv in outcome.pairs] + [record.id for record in outcome.unmatched_dataverse]
    ambiguous = SyncError.objects.open().filter(table_mapping=job.table_mapping, error_class=ErrorClass.AMBIGUOUS_MATCH)
    closed = 0
    step = 500  # ids per query, well under SQLite's limit on variables
    for start in range(0, max(len(bc_ids), len(dataverse_ids)), step):
        settled = Q(bc_id__in=bc_ids[start : start + step]) | Q(dataverse_id__in=dataverse_ids[start : start + step])
        closed += ambiguous.filter(settled).close(ErrorState.RESOLVED_BY_SYNC, job_id=job.pk)
    return closed


def _run_match_coupling(job: SyncJob, bc_client, dataverse_client) -> str:
    mapping = job.table_mapping
    outcome, created = match_based_coupling_run(
        mapping=mapping, bc_client=bc_client, dataverse_client=dataverse_client, job_id=job.pk
    )
    _close_settled_ambiguous_errors(job, outcome)
    unmatched = len(outcome.unmatched_bc) + len(outcome.unmatched_dataverse)
    # Records read on both sides = two per pair coupled + the ambiguous + those without a match (job page's equation).
    SyncJob.objects.filter(pk=job.pk).update(
        coupled=len(created),
        failed=len(outcome.ambiguous),
        skipped=unmatched,
        progress_done=outcome.records_read,
        progress_total=outcome.records_read,
    )
    message = (
        f"Coupled {len(created)} pair(s). {len(outcome.ambiguous)} record(s) match several records: couple them "
        f"from the ambiguous matches list. Without a match: {len(outcome.unmatched_bc)} in Business Central, "
        f"{len(outcome.unmatched_dataverse)} in Dataverse."
    )
    follow_ups = []
    if mapping.create_new_if_no_match and outcome.unmatched_bc and mapping.syncs_to_dataverse:
        follow_ups += sync_jobs_create(
            mapping=mapping,
            kind=JobKind.RECORDS,
            direction=Direction.TO_DATAVERSE,
            record_ids=[c.id for c in outcome.unmatched_bc],
            user=job.requested_by,
            via=RequestedVia.FOLLOW_UP,
        )
    if mapping.sync_after_match_coupling and created:
        for direction in _directions_after_coupling(mapping):
            source_attr = "bc_id" if direction == Direction.TO_DATAVERSE else "dataverse_id"
            follow_ups += sync_jobs_create(
                mapping=mapping,
                kind=JobKind.RECORDS,
                direction=direction,
                record_ids=[getattr(c, source_attr) for c in created],
                user=job.requested_by,
                via=RequestedVia.FOLLOW_UP,
            )
    if follow_ups:
        sync_jobs_enqueue(follow_ups)
        message += f" Queued sync job(s) {', '.join(f'#{j.pk}' for j in follow_ups)} for the new couplings."
    return message


def _directions_after_coupling(mapping: TableMapping) -> list[str]:
    """As BC: a bidirectional mapping syncs the way its conflict policy points, else To Dataverse."""
    if mapping.direction != Direction.BIDIRECTIONAL:
        return [mapping.direction]
    if mapping.update_conflict_resolution == UpdateConflictResolution.GET_FROM_DATAVERSE:
        return [Direction.FROM_DATAVERSE]
    return [Direction.TO_DATAVERSE]


def _run_uncoupling(job: SyncJob, dataverse_client) -> str:
    couplings = Coupling.objects.filter(table_mapping=job.table_mapping)
    if job.record_ids:
        couplings = couplings.filter(pk__in=job.record_ids)
    if job.record_ids:
        result = records_uncouple(
            job,
            couplings,
            state=ErrorState.RESOLVED_BY_HAND,
            dataverse_client=dataverse_client,
            user=job.requested_by,
        )
    else:
        # Every coupling of the mapping: every error naming a record closes, in one UPDATE.
        SyncError.objects.filter(table_mapping=job.table_mapping_id).exclude(bc_id=None, dataverse_id=None).close(
            ErrorState.RESOLVED_BY_HAND, job_id=job.pk, user=job.requested_by
        )
        result = couplings_uncouple(mapping=job.table_mapping, couplings=couplings, dataverse_client=dataverse_client)
    SyncJob.objects.filter(pk=job.pk).update(uncoupled=result.uncoupled, progress_done=result.uncoupled)
    message = f"Removed {result.uncoupled} coupling(s); the records stay in both systems."
    if result.cleared:
        message += f" Cleared the company on {result.cleared} Dataverse row(s)."
    if result.handed_over:
        message += f" {result.handed_over} Dataverse row(s) another company still couples now belong to that company."
    return message


def coupling_job_enqueue(*, mapping: TableMapping, user=None, reconciliation=None) -> SyncJob:
    """Queue match-based coupling of a mapping's uncoupled records (with its saved criteria)."""
    with transaction.atomic():
        job = SyncJob.objects.create(
            kind=JobKind.COUPLING,
            table_mapping=mapping,
            direction=mapping.direction,
            requested_by=_user(user),
            **_origin(reconciliation),
        )
        transaction.on_commit(lambda: _enqueue([job.pk]))
    return job


def uncoupling_job_enqueue(
    *, mapping: TableMapping, coupling_ids: list[int] | None = None, user=None, reconciliation=None
) -> SyncJob:
    """Queue the removal of some (or all) couplings of a mapping."""
    with transaction.atomic():
        job = SyncJob.objects.create(
            kind=JobKind.UNCOUPLING,
            table_mapping=mapping,
            direction=mapping.direction,
            requested_by=_user(user),
            record_ids=[int(i) for i in coupling_ids or []],
            **_origin(reconciliation),
        )
        transaction.on_commit(lambda: _enqueue([job.pk]))
    return job


def _user(user):
    return user if user is not None and user.is_authenticated else None


def _origin(reconciliation) -> dict:
    """A job asked for by a reconciliation's bulk action records it; any other job is a user's."""
    if reconciliation is None:
        return {"requested_via": RequestedVia.USER}
    return {"requested_via": RequestedVia.RECONCILIATION, "reconciliation": reconciliation}


def _on_page(job: SyncJob, lock, on_progress, requests: RequestTally | None = None) -> None:
    running = SyncJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING)
    # The job page shows the requests made so far: "HTTP requests 0" beside a run well under way contradicted it.
    live = requests.live() if requests else {}
    if not (running.update(**live) if live else running.exists()):
        # Recovery took this run as stopped and resumed it elsewhere: the resumed run goes on, not this one.
        raise RunCancelled(f"{WORKER_STOPPED} This run was resumed by another job.")
    _keep_lock(job, lock)
    if on_progress:
        on_progress(job)


def _keep_lock(job: SyncJob, lock) -> None:
    """Renew the mapping's lock; if it lapsed (a page slower than its expiry), take it back unless another run has."""
    try:
        lock.extend(settings.SYNC_LOCK_TIMEOUT_SECONDS, replace_ttl=True)
    except LockNotOwnedError:
        if not lock.acquire(blocking=False):
            raise RunCancelled(
                f"Another run of {job.table_mapping.name} took over after this run's lock lapsed."
            ) from None


def _advance_watermark(job: SyncJob, latest) -> None:
    if latest is None:
        return
    mapping = TableMapping.objects.get(pk=job.table_mapping_id)
    field = "dataverse_watermark" if job.direction == "from_dataverse" else "bc_watermark"
    current = getattr(mapping, field)
    if current is None or latest > current:
        TableMapping.objects.filter(pk=mapping.pk).update(**{field: latest})


def _finish_all(jobs: list[SyncJob], status: str, message: str) -> None:
    SyncJob.objects.filter(pk__in=[j.pk for j in jobs]).update(
        status=status, message=message, finished_at=timezone.now()
    )


def sync_jobs_delete_old(*, now=None) -> int:
    """Delete finished jobs (and their errors) older than the retention period; return how many jobs went."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.SYNC_JOB_RETENTION_DAYS)
    # Errors go with their job (cascade), never by their own age: a job still listed keeps every error it links to.
    _, deleted = SyncJob.objects.filter(finished_at__lt=cutoff).delete()
    return deleted.get(SyncJob._meta.label, 0)
