"""Deletions: coupled records deleted in a run's source system, handled by the mapping's deletion policy.

Business Central's own engine never propagates a deletion (docs/architecture.md; ../shared/docs/domain.md 3.6). Here
a run first finds the coupled source records that were deleted since the last run:
- Dataverse: the deleted rows of the change-tracking delta (`$deletedEntity` entries behind the mapping's delta
  link; https://learn.microsoft.com/power-apps/developer/data-platform/use-change-tracking-synchronize-data-external-systems).
  Without a delta link yet (first run, or the token expired), the coupled ids are checked for existence once and a new
  link is taken.
- Business Central has no delta of deletions: the coupled ids are checked for existence (pages of ids, see
  coupling/existence.py) at most every SYNC_BC_DELETION_CHECK_MINUTES, sooner after a "deleted" change notification,
  and at every full synchronization.

Then, per the direction's policy (mappings.choices.DeletionPolicy): delete the other record (with the ETag of our last
sync: one changed since is not deleted blindly; one another mapping still couples, e.g. another company's, is kept
and only this coupling goes), uncouple and keep it, restore the deleted record from it (a selected-records run in the
reverse direction, right after this one), or report the deletion (one open error per record, however often the
existence check finds it again). Uncoupling here is uncoupling as a person does it (jobs/uncoupling.py): the records'
errors close and this company's stamp leaves a surviving Dataverse row.

The safety stop: when the deletions found act on more than the mapping's `deletion_safety_percent` of its coupled
records, nothing is done, the run fails with the count, and the ids are kept on the job until an administrator
confirms (jobs.services.sync_deletions_confirm): a "confirmed deletions" job then checks once more that the records
are still gone and carries them out. The delta link does not move on while deletions are held.

Deleting the other record may fail (503, throttled, refused, changed since): the coupling then stays, marked with
the system the record was deleted in (`Coupling.deleted_in`), and each later run in that direction tries again (past
the safety stop, which it went through once) until it succeeds, as a failed write is retried: a transient failure is
never skipped and waits a back-off (jobs/engine/backoff.py), a permanent one is skipped after the mapping's number of
identical failures (jobs/engine/saver.py `record_failure`) until it is un-skipped. Without the mark a Dataverse
deletion, gone from the delta once read, would be lost.

Each coupled source record found deleted and handled is a record the job read, with one outcome (the job page's
equation, SyncJob.counts_reconcile): `deleted` when the other record was deleted, restored or the deletion reported,
`uncoupled` when only the coupling went (the uncouple policy, or a record another mapping still couples), `failed`
when deleting the other record failed, `waiting` when trying again waits out a transient failure's back-off. A
record reported by an earlier run is not read again. A retried deletion whose source record exists again (restored)
is dropped before anything is deleted: the record is synchronized as the live coupled record it is.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, cast
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from adminkit.times import admin_time
from connectors.dataverse import ChangeTrackingExpired
from connectors.types import ConnectorError, ErrorKind, Page, RemoteClient, WriteOperation
from coupling.existence import chunked, missing_ids
from coupling.models import Coupling, KeptRecord
from jobs.choices import ErrorClass, ErrorState, JobKind
from jobs.engine.backoff import retryable, schedule_retries, waiting
from jobs.engine.coupling_rows import update_couplings
from jobs.engine.reader import SourceUnreadable
from jobs.engine.saver import error_class_of, record_failure
from jobs.engine.sides import sides_for
from jobs.engine.unskip import unskip_fixed
from jobs.models import SyncError, SyncJob
from jobs.uncoupling import records_uncouple
from mappings.choices import DeletionPolicy, Direction
from mappings.models import TableMapping

logger = logging.getLogger(__name__)

WRITE_CHUNK = 100
# What a failed deletion changes on its coupling (jobs.engine.saver.record_failure, and the mark to try again).
FAILED_DELETION_FIELDS = [
    "deleted_in",
    "last_result_to_dataverse",
    "last_result_from_dataverse",
    "last_job_to_dataverse",
    "last_job_from_dataverse",
    "last_error_to_dataverse",
    "last_error_from_dataverse",
    "failures_to_dataverse",
    "failures_from_dataverse",
    "skipped",
    "skipped_at",
    "skipped_error_class",
    "skipped_target_etag",
    "reserved_at",
]
IDS_PER_QUERY = 5000
UNCOUPLE_REASON = "the mapping's deletion policy says so (uncouple and keep the other record)"


class DeletionsHeld(Exception):
    """The safety stop: the run would act on too many deletions; nothing was done."""


class ChangeTracking(Protocol):
    def read_changes(
        self, entity_set: str, *, select: list[str] | None = None, delta_link: str | None = None
    ) -> Any: ...


def reverse(direction: str) -> str:
    return Direction.FROM_DATAVERSE if direction == Direction.TO_DATAVERSE else Direction.TO_DATAVERSE


def safety_stop_holds(mapping: TableMapping, policy: str, found: int) -> tuple[bool, int]:
    """The safety stop's rule, for the run (DeletionPass) and its preview (jobs/engine/preview.py) alike: whether
    acting on `found` deletions under `policy` would hold them, and the mapping's coupled records they are compared
    with. Held when they are more than the mapping's `deletion_safety_percent` of its coupled records; reporting
    changes nothing, so it is never held."""
    if policy == DeletionPolicy.REPORT or not found:
        return False, 0
    coupled = Coupling.objects.filter(table_mapping=mapping, pending=False).count()
    allowed = math.floor(coupled * mapping.deletion_safety_percent / 100)
    return found > allowed, coupled


def policy_for(mapping: TableMapping, direction: str) -> str:
    """The policy for deletions in the source of a run in `direction` (to Dataverse: Business Central deletions)."""
    if direction == Direction.TO_DATAVERSE:
        return str(mapping.deletions_to_dataverse)
    return str(mapping.deletions_from_dataverse)


class DeletionPass:
    """Find and handle the coupled source records deleted since the last run of one mapping in one direction."""

    def __init__(self, job: SyncJob, *, bc_client: RemoteClient, dataverse_client: RemoteClient) -> None:
        self.job = job
        self.mapping: TableMapping = job.table_mapping
        self.source, self.target = sides_for(self.mapping, job.direction)
        self.source_client = dataverse_client if self.source.is_dataverse else bc_client
        self.target_client = dataverse_client if self.target.is_dataverse else bc_client
        self.dataverse_client = dataverse_client
        self.policy = policy_for(self.mapping, job.direction)
        self.source_attr = self.source.coupling_attr("id")
        self.target_attr = self.target.coupling_attr("id")
        self.previewed = 0  # a preview: the coupled source records found deleted (nothing handled, nothing kept)
        self.retrying = 0  # a preview: earlier deletions whose carrying over failed, which the run tries again

    # -- entry point --------------------------------------------------------------------------------------------

    def run(self) -> list[SyncJob]:
        """Detect and handle; return the restore jobs to run next (reverse direction, selected records)."""
        if self.job.kind not in (JobKind.MODIFIED, JobKind.FULL, JobKind.DELETIONS):
            return []
        if self.job.dry_run:
            self._preview()
            return []
        try:
            if self.job.kind == JobKind.DELETIONS:
                confirmed = [uuid.UUID(str(i)) for i in self.job.record_ids]
                gone = missing_ids(self.source_client, self.source.entity_set, self.source.id_field, confirmed)
                return self.handle(gone, confirmed=True)
            gone, remember = self.detect()
            if self.job.kind == JobKind.MODIFIED:
                # A skipped deletion whose cause was fixed is due again in this very run, as a skipped write is
                # (the reader does the same for the records it retries; it finds these done).
                unskip_fixed(self.mapping, self.job.direction, self.target, self.target_client)
            marked = self._marked()
            # Deletions found earlier whose carrying over failed are not new: no safety stop for them again.
            new = gone - set(marked)
            if new and self.source.is_dataverse:
                # The delta lists a row deleted then created again under its id (restored) as deleted: it is not.
                new -= self._back(new)
            follow_ups = self.handle(new, confirmed=False) if new else []
            # Tried again until they succeed, or fail permanently often enough to be skipped (the skip policy).
            due, backing_off = self._due(marked)
            if backing_off:
                self._counted(waiting=len(backing_off))  # considered, left for a later run: an outcome of its own
            back = self._back(due) if due else set()
            if back:
                self._live_again([marked[i] for i in back])
            due -= back
            follow_ups += self.handle(due, confirmed=True) if due else []
        except ConnectorError as exc:
            if self.job.kind == JobKind.DELETIONS:
                raise SourceUnreadable(f"The confirmed deletions could not be carried out: {exc}") from exc
            # Not knowing what was deleted is no reason to stop synchronizing changes: said in the job's message.
            # Nothing is remembered, so the next run looks again.
            logger.warning("Deletions of %s not handled: %s", self.mapping.name, exc)
            SyncJob.objects.filter(pk=self.job.pk).update(
                message=f"Deletions in {self.source.label} were not checked or handled: {exc}"
            )
            return []
        remember()
        return follow_ups

    def _preview(self) -> None:
        """Count what a run would find deleted; the delta link and the check time stay where they are."""
        try:
            gone, _remember = self.detect()
        except ConnectorError as exc:
            logger.warning("Deletions of %s not previewed: %s", self.mapping.name, exc)
            return
        marked = self._marked()
        self.previewed = len(self.couplings_of(gone - set(marked)))
        self.retrying = len(self._due(marked)[0])

    # -- detection ----------------------------------------------------------------------------------------------

    def coupled_ids(self) -> list[UUID]:
        return list(
            Coupling.objects.filter(
                table_mapping=self.mapping, pending=False, **{f"{self.source_attr}__isnull": False}
            ).values_list(self.source_attr, flat=True)
        )

    def detect(self) -> tuple[set[UUID], Callable[[], None]]:
        """The coupled source ids deleted since the last check, and what to remember once they are handled."""
        if self.source.is_dataverse:
            return self._detect_dataverse()
        return self._detect_business_central()

    def _detect_business_central(self) -> tuple[set[UUID], Callable[[], None]]:
        mapping = self.mapping
        checked = mapping.bc_deletions_checked_at
        period = timedelta(minutes=settings.SYNC_BC_DELETION_CHECK_MINUTES)
        due = (
            mapping.bc_deletion_check_due
            or self.job.kind == JobKind.FULL
            or checked is None
            or timezone.now() - checked >= period
        )
        if not due:
            return set(), lambda: None
        started = timezone.now()
        gone = missing_ids(self.source_client, self.source.entity_set, self.source.id_field, self.coupled_ids())

        def remember() -> None:
            TableMapping.objects.filter(pk=mapping.pk).update(
                bc_deletions_checked_at=started, bc_deletion_check_due=False
            )

        return gone, remember

    def _detect_dataverse(self) -> tuple[set[UUID], Callable[[], None]]:
        tracking = cast(ChangeTracking, self.source_client)
        link = self.mapping.dataverse_delta_link
        gone: set[UUID] = set()
        new_link: str | None = None
        if link:
            try:
                pages: list[Page] = list(tracking.read_changes(self.source.entity_set, delta_link=link))
            except ChangeTrackingExpired:
                logger.warning("The change-tracking token of %s expired: checking coupled ids.", self.mapping.name)
            else:
                gone = {i for page in pages for i in page.deleted_ids}
                new_link = pages[-1].delta_link if pages else None
        if new_link is None:
            coupled = self.coupled_ids()
            if not coupled:
                return set(), lambda: None  # nothing coupled, so no deletion can matter yet; no link needed either
            # The link first, then the check: a row deleted in between is in one or the other.
            for page in tracking.read_changes(self.source.entity_set, select=[self.source.id_field]):
                new_link = page.delta_link or new_link
            gone = missing_ids(self.source_client, self.source.entity_set, self.source.id_field, coupled)
        else:
            known = set(self.coupled_ids()) if gone else set()
            gone &= known

        def remember() -> None:
            TableMapping.objects.filter(pk=self.mapping.pk).update(dataverse_delta_link=new_link or "")

        return gone, remember

    def _marked(self) -> dict[UUID, Coupling]:
        """The coupled source records found deleted by earlier runs whose deletion could not be carried over yet
        (deleting the other record failed): `Coupling.deleted_in`."""
        marked = Coupling.objects.filter(table_mapping=self.mapping).deleted_in(self.source.system)
        return {getattr(c, self.source_attr): c for c in marked if getattr(c, self.source_attr)}

    def _due(self, marked: dict[UUID, Coupling]) -> tuple[set[UUID], set[UUID]]:
        """The ones to try again now: not skipped (a permanent failure repeated; they wait for an un-skip or a
        retry), and not waiting out a transient failure's back-off (jobs/engine/backoff.py); and those waiting so."""
        if not marked:
            return set(), set()
        backing_off = waiting(self.mapping.pk, self.job.direction, timezone.now())
        live = {i for i, c in marked.items() if not c.skipped}
        return live - backing_off, live & backing_off

    def _back(self, source_ids: set[UUID]) -> set[UUID]:
        """The ones among these deleted source records that exist again (restored, or created again under the
        same id) since they were found deleted: a page of ids a request."""
        return source_ids - missing_ids(self.source_client, self.source.entity_set, self.source.id_field, source_ids)

    def _live_again(self, couplings: list[Coupling]) -> None:
        """Source records whose deletion was being carried over exist again: deleting their partner now would
        delete a live record's partner. The deletion is dropped, its error closed as the run's doing with a line
        saying why, and the coupling is live again with a fresh start for the skip policy; it stays failed in this
        direction, so the reader retries the record in this same run as any failed record (and counts it)."""
        now = timezone.now()
        line = (
            f"\n{admin_time(now)}: the {self.source.label} record exists again (restored, or created again under "
            f"its id): its deletion is no longer carried over, and the coupling stays."
        )
        source_ids = [getattr(c, self.source_attr) for c in couplings]
        with transaction.atomic():
            for chunk in chunked(source_ids, IDS_PER_QUERY):
                errors = SyncError.objects.open().of_records(self.mapping.pk, self.job.direction, chunk)
                errors.update(detail=Concat(F("detail"), Value(line)))
                errors.close(ErrorState.RESOLVED_BY_SYNC, job_id=self.job.pk, now=now)
            for chunk in chunked([c.pk for c in couplings], IDS_PER_QUERY):
                Coupling.objects.filter(pk__in=chunk).unskip(self.job.direction)
                Coupling.objects.filter(pk__in=chunk).update(deleted_in="")
        self._say(
            f"{len(couplings)} {self.source.label} record(s) found deleted earlier exist again: their deletion was "
            f"not carried over, and they are synchronized as coupled records."
        )

    # -- handling -----------------------------------------------------------------------------------------------

    def handle(self, gone: set[UUID], *, confirmed: bool) -> list[SyncJob]:
        """Carry out the policy for these deleted source records: a run's and a confirmed-deletions job's one path."""
        couplings = self.couplings_of(gone)
        if not couplings:
            return []
        if not confirmed:
            self._safety_stop(couplings)
        follow_ups: list[SyncJob] = []
        if self.policy == DeletionPolicy.PROPAGATE:
            self._propagate(couplings)
        elif self.policy == DeletionPolicy.UNCOUPLE:
            self._uncouple(couplings)
        elif self.policy == DeletionPolicy.RESTORE:
            follow_ups = self._restore(couplings)
        else:
            self._report(couplings)
        if self.policy != DeletionPolicy.PROPAGATE:
            # A deletion whose propagation failed under an earlier policy is handled by this one now: no retry.
            for chunk in chunked([c.pk for c in couplings if c.deleted_in], IDS_PER_QUERY):
                Coupling.objects.filter(pk__in=chunk).update(deleted_in="")
        return follow_ups

    def couplings_of(self, source_ids: set[UUID]) -> list[Coupling]:
        """The couplings of these source records, a chunk of ids per query (SQLite takes 32,766 parameters at most)."""
        found: list[Coupling] = []
        for chunk in chunked(sorted(source_ids), IDS_PER_QUERY):
            found += Coupling.objects.filter(
                table_mapping=self.mapping, pending=False, **{f"{self.source_attr}__in": chunk}
            )
        return found

    def _counted(self, *, deleted: int = 0, uncoupled: int = 0, failed: int = 0, waiting: int = 0) -> None:
        """Each deleted source record handled is a record read with one outcome (the job page's equation); so is
        one whose deletion waits out a back-off before it is tried again."""
        SyncJob.objects.filter(pk=self.job.pk).update(
            progress_done=F("progress_done") + deleted + uncoupled + failed + waiting,
            deleted=F("deleted") + deleted,
            uncoupled=F("uncoupled") + uncoupled,
            failed=F("failed") + failed,
            waiting=F("waiting") + waiting,
        )

    def _safety_stop(self, couplings: list[Coupling]) -> None:
        held, coupled = safety_stop_holds(self.mapping, self.policy, len(couplings))
        if not held:
            return
        share = self.mapping.deletion_safety_percent
        ids = sorted(str(getattr(c, self.source_attr)) for c in couplings)
        SyncJob.objects.filter(pk=self.job.pk).update(held_deletions=ids)
        percent = 100 * len(couplings) / coupled if coupled else 100
        raise DeletionsHeld(
            f"Safety stop: {len(couplings)} coupled {self.source.label} records were deleted ({percent:.1f}% of the "
            f"{coupled} coupled records, more than the mapping's {share}%). Nothing was deleted, uncoupled or "
            f'restored. Check the deletions, then confirm them on this job ("Confirm the held deletions").'
        )

    def _uncoupled(self, couplings: list[Coupling], *, target_survives: bool) -> None:
        """Uncouple as uncoupling by hand does (the records' errors close, this company's stamp on a surviving
        Dataverse row is cleared), closing the errors as the run's doing."""
        keeps_dataverse_row = target_survives and self.target.is_dataverse
        for chunk in chunked([c.pk for c in couplings], IDS_PER_QUERY):
            records_uncouple(
                self.job,
                Coupling.objects.filter(pk__in=chunk),
                state=ErrorState.RESOLVED_BY_SYNC,
                dataverse_client=self.dataverse_client if keeps_dataverse_row else None,
            )

    def _propagate(self, couplings: list[Coupling]) -> None:
        """Delete each coupled target record (If-Match: our last sync's ETag), then the coupling; a target record
        another mapping still couples is kept, and only this coupling goes."""
        held = self._held_elsewhere(couplings)
        if held:
            self._keep_held([c for c in couplings if getattr(c, self.target_attr) in held], held)
        for chunk in chunked_couplings([c for c in couplings if getattr(c, self.target_attr) not in held]):
            operations = [
                WriteOperation(
                    kind="delete",
                    entity_set=self.target.entity_set,
                    ref=str(c.pk),
                    record_id=getattr(c, self.target_attr),
                    etag=getattr(c, self.target.coupling_attr("etag")) or None,
                )
                for c in chunk
                if getattr(c, self.target_attr)
            ]
            results = {r.ref: r for r in self.target_client.write_many(operations)} if operations else {}
            removed: list[Coupling] = []
            failed: list[Coupling] = []
            errors: list[SyncError] = []
            transient: list[SyncError] = []
            now = timezone.now()
            for coupling in chunk:
                result = results.get(str(coupling.pk))
                if (
                    result is None
                    or result.ok
                    or (result.error is not None and result.error.kind == ErrorKind.NOT_FOUND)
                ):
                    removed.append(coupling)  # deleted now, or already gone
                    continue
                error = self._failed_deletion(coupling, result.error, now)
                errors.append(error)
                failed.append(coupling)
                if retryable(error.error_class, outcome_unknown=bool(getattr(result.error, "outcome_unknown", False))):
                    transient.append(error)
            if transient:
                # Read before the records' open errors are superseded: each new one continues their back-off.
                schedule_retries(self.mapping.pk, self.job.direction, transient, now)
            self._note_target_versions([c for c in failed if c.skipped and not c.skipped_target_etag])
            with transaction.atomic():
                self._uncoupled(removed, target_survives=False)
                update_couplings(failed, FAILED_DELETION_FIELDS)
                self._superseding(errors)
                self._counted(deleted=len(removed), failed=len(errors))

    def _failed_deletion(self, coupling: Coupling, error: ConnectorError | None, now: datetime) -> SyncError:
        """Deleting the other record failed: the coupling stays, marked to be tried again by the next runs in this
        direction (`Coupling.deleted_in`) under the skip policy of the error's class, as a record's failed write is.
        A stale ETag (409 Request_EntityChanged on Business Central, 412 on Dataverse) is a deletion conflict: the
        other record changed since the last synchronization, so it is not deleted blindly."""
        changed = error is not None and error.kind == ErrorKind.CONFLICT
        error_class = ErrorClass.DELETION_CONFLICT if changed or error is None else error_class_of(error)
        if changed:
            message = (
                f"The {self.source.label} record was deleted, but its coupled {self.target.label} record changed "
                f"since the last synchronization, so it was not deleted. Delete it or restore the other one, or "
                f"uncouple them."
            )
        else:
            reason = error.message if error else "no reason given"
            message = (
                f"The {self.source.label} record was deleted; deleting its coupled {self.target.label} record "
                f"failed: {reason}"
            )
        # The target's version is not compared for an un-skip (empty): it is the version that made it fail.
        note = record_failure(
            coupling,
            self.job,
            error_class,
            message,
            now=now,
            outcome_unknown=bool(getattr(error, "outcome_unknown", False)),
        )
        coupling.deleted_in = self.source.system
        detail = "\n".join(part for part in (error.detail() if error else "", note) if part)
        return self._error(coupling, message, detail=detail, error_class=error_class)

    def _note_target_versions(self, skipped: list[Coupling]) -> None:
        """The target records' versions when their deletion was skipped, so that a later change of one by someone
        un-skips it (jobs/engine/unskip.py), as for a skipped write. A failed delete answers with no version: one
        read of the ids. Not known (unreadable now): the record waits for the other causes or a retry by hand."""
        by_id = {getattr(c, self.target_attr): c for c in skipped if getattr(c, self.target_attr)}
        if not by_id:
            return
        try:
            rows = self.target_client.read_by_ids(
                self.target.entity_set, list(by_id), select=[self.target.id_field, self.target.modified_field]
            )
        except ConnectorError as exc:
            logger.warning("Versions of %s records whose deletion was skipped not read: %s", self.target.label, exc)
            return
        for record_id, row in rows.items():
            if record_id in by_id:
                by_id[record_id].skipped_target_etag = self.target.row_etag(row)[:200]

    def _held_elsewhere(self, couplings: list[Coupling]) -> dict[UUID, set[str]]:
        """The target records of these couplings that another mapping's coupling holds (another company's mapping of
        the same table, say), with the names of those mappings: deleting them would break those couplings."""
        target_ids = [getattr(c, self.target_attr) for c in couplings if getattr(c, self.target_attr)]
        entity_set = "dataverse_entity_set" if self.target.is_dataverse else "bc_entity_set"
        held: dict[UUID, set[str]] = {}
        for chunk in chunked(target_ids, IDS_PER_QUERY):
            others = (
                Coupling.objects.filter(
                    **{f"{self.target_attr}__in": chunk, f"table_mapping__{entity_set}": self.target.entity_set}
                )
                .exclude(table_mapping=self.mapping)
                .values_list(self.target_attr, "table_mapping__name", "table_mapping__company__name")
            )
            for target_id, name, company in others:
                held.setdefault(target_id, set()).add(f"{name} ({company})" if company else name)
        return held

    def _keep_held(self, couplings: list[Coupling], held: dict[UUID, set[str]]) -> None:
        """Uncouple only, and keep each survivor uncoupled on purpose (KeptRecord, with the mappings that hold it):
        the deletion stands in this mapping, so its reverse runs must not create the deleted record again from the
        survivor, now uncoupled here; and the records kept list says which records were kept and why."""
        with transaction.atomic():
            self._uncoupled(couplings, target_survives=True)
            KeptRecord.objects.bulk_create(
                [
                    self._kept(c, because=self._held_reason(sorted(held[getattr(c, self.target_attr)])))
                    for c in couplings
                ],
                batch_size=500,
                ignore_conflicts=True,
            )
            self._counted(uncoupled=len(couplings))
        mappings = sorted({name for c in couplings for name in held[getattr(c, self.target_attr)]})
        records = ", ".join(sorted(c.dataverse_name or c.bc_name or str(c.pk) for c in couplings)[:5])
        more = "…" if len(couplings) > 5 else ""
        self._say(
            f"{len(couplings)} {self.target.label} record(s) whose {self.source.label} record was deleted were kept, "
            f"not deleted: they are still coupled by {', '.join(mappings)} ({records}{more}). Only this mapping's "
            f"coupling was removed (counted as uncoupled); they are listed under Records kept uncoupled."
        )

    def _say(self, text: str) -> None:
        job = SyncJob.objects.only("message").get(pk=self.job.pk)
        SyncJob.objects.filter(pk=self.job.pk).update(message=f"{job.message} {text}".strip())

    def _uncouple(self, couplings: list[Coupling]) -> None:
        """Uncouple, and keep each surviving record uncoupled on purpose (KeptRecord): an administrator choosing
        "uncouple and keep the other record" wants the deletion to stand, so runs of the reverse direction (of a
        bidirectional mapping) must not create the deleted record again from the survivor, now uncoupled."""
        with transaction.atomic():
            self._uncoupled(couplings, target_survives=True)
            KeptRecord.objects.bulk_create(
                [self._kept(c, because=UNCOUPLE_REASON) for c in couplings if getattr(c, self.target_attr)],
                batch_size=500,
                ignore_conflicts=True,
            )
            self._counted(uncoupled=len(couplings))

    def _held_reason(self, mappings: list[str]) -> str:
        return (
            f"the mapping's deletion policy is to propagate the deletion, but {', '.join(mappings)} still "
            f"couple{'s' if len(mappings) == 1 else ''} this record, so it was not deleted"
        )

    def _kept(self, coupling: Coupling, *, because: str) -> KeptRecord:
        deleted = getattr(coupling, self.source.coupling_attr("name")) or getattr(coupling, self.source_attr)
        return KeptRecord(
            table_mapping=self.mapping,
            side=self.target.kind,
            record_id=getattr(coupling, self.target_attr),
            record_name=getattr(coupling, self.target.coupling_attr("name")) or "",
            job_id=self.job.pk,
            reason=(
                f"Its coupled {self.source.label} record ({deleted}) was deleted; job #{self.job.pk} uncoupled them "
                f"on {timezone.now():%Y-%m-%d %H:%M} UTC: {because}. Runs do not create it again in "
                f"{self.source.label}: couple it, synchronize it now, or forget this choice to let runs do so."
            ),
        )

    def _restore(self, couplings: list[Coupling]) -> list[SyncJob]:
        """Recreate each deleted record from its coupled partner: a selected-records run in the reverse direction."""
        back = reverse(self.job.direction)
        if back not in (
            ([Direction.TO_DATAVERSE] if self.mapping.syncs_to_dataverse else [])
            + ([Direction.FROM_DATAVERSE] if self.mapping.syncs_from_dataverse else [])
        ):
            self._report(
                couplings,
                f"The {self.source.label} record was deleted and the policy is to restore it, but the mapping "
                f"does not synchronize {self.target.label} records to {self.source.label}: kept as it is.",
            )
            return []
        now = timezone.now()
        with transaction.atomic():
            for chunk in chunked([c.pk for c in couplings], IDS_PER_QUERY):
                Coupling.objects.filter(pk__in=chunk).prepare_restore(self.source.system, now)
            self._counted(deleted=len(couplings))
        survivors = [str(getattr(c, self.target_attr)) for c in couplings]
        return [
            SyncJob.objects.create(
                kind=JobKind.RECORDS,
                table_mapping=self.mapping,
                direction=back,
                # Started by whoever started the run that found the deletions (its message names that run).
                requested_by_id=self.job.requested_by_id,
                requested_via=self.job.requested_via,
                reconciliation_id=self.job.reconciliation_id,
                record_ids=chunk,
                message=f"Restores records deleted in {self.source.label} (found by job #{self.job.pk}).",
            )
            for chunk in chunked(survivors, 5000)
        ]

    def _report(self, couplings: list[Coupling], message: str = "") -> None:
        """One open error per deleted record: a record reported by an earlier check (Business Central's periodic
        existence check finds it again each time, as the coupling stays) is not reported or counted again."""
        reported = self._reported_already(couplings)
        new = [c for c in couplings if getattr(c, self.source_attr) not in reported]
        message = message or (
            f"The {self.source.label} record was deleted; its coupled {self.target.label} record was kept (the "
            f"mapping's deletion policy is to report). Delete it, restore the other one, or uncouple them."
        )
        with transaction.atomic():
            SyncError.objects.bulk_create([self._error(c, message) for c in new])
            self._counted(deleted=len(new))

    def _reported_already(self, couplings: list[Coupling]) -> set[UUID]:
        source_ids = [getattr(c, self.source_attr) for c in couplings]
        reported: set[UUID] = set()
        for chunk in chunked(source_ids, IDS_PER_QUERY):
            reported.update(
                SyncError.objects.open()
                .of_records(self.mapping.pk, self.job.direction, chunk)
                .filter(error_class=ErrorClass.DELETION_CONFLICT)
                .values_list(self.source_attr, flat=True)
            )
        return reported

    def _superseding(self, errors: list[SyncError]) -> None:
        """Save these errors, each replacing its record's open error of this direction: one open error per record."""
        source_ids = [getattr(e, self.source_attr) for e in errors]
        for chunk in chunked(source_ids, IDS_PER_QUERY):
            SyncError.objects.of_records(self.mapping.pk, self.job.direction, chunk).close(
                ErrorState.SUPERSEDED, job_id=self.job.pk
            )
        SyncError.objects.bulk_create(errors)

    def _error(
        self, coupling: Coupling, message: str, *, detail: str = "", error_class: str = ErrorClass.DELETION_CONFLICT
    ) -> SyncError:
        return SyncError(
            job=self.job,
            table_mapping=self.mapping,
            direction=self.job.direction,
            bc_id=coupling.bc_id,
            dataverse_id=coupling.dataverse_id,
            bc_name=coupling.bc_name,
            dataverse_name=coupling.dataverse_name,
            error_class=error_class,
            message=message,
            detail=detail,
        )


def chunked_couplings(couplings: list[Coupling]) -> list[list[Coupling]]:
    return [couplings[i : i + WRITE_CHUNK] for i in range(0, len(couplings), WRITE_CHUNK)]
