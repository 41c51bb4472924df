from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q

from connectors.choices import ConnectionKind
from coupling.choices import SyncResult
from mappings.choices import BC, Direction
from mappings.models import TableMapping


class CouplingQuerySet(models.QuerySet["Coupling"]):
    def unskip(self, direction: str | None = None) -> int:
        """Let these records be synchronized again, with a fresh start for "skipped after failing twice".

        The last error (in `direction`, or both) and the failure count are forgotten, so the skip policy counts anew.
        """
        directions = [direction] if direction else [Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE]
        fields = [Coupling.error_field(d) for d in directions]
        counts = [Coupling.failures_field(d) for d in directions]
        # Errors first: `self` may be filtered on skipped=True, which the second update makes match nothing.
        self.update(
            **dict.fromkeys(fields, ""),
            **dict.fromkeys(counts, 0),
            skipped_at=None,
            skipped_error_class="",
            skipped_target_etag="",
        )
        return self.update(skipped=False)

    def choose_first_direction(self, direction: str) -> int:
        """A person asked to synchronize these records in `direction`: for the pairs never synchronized yet, that
        direction holds until it has succeeded once (see `first_sync_direction`)."""
        never_synced = self.exclude(last_result_to_dataverse=SyncResult.SUCCESS).exclude(
            last_result_from_dataverse=SyncResult.SUCCESS
        )
        return never_synced.filter(pending=False).update(first_sync_direction=direction)

    def deleted_in(self, system: str) -> CouplingQuerySet:
        """The pairs whose record in `system` was found deleted and whose deletion is still being carried over
        (`Coupling.deleted_in`). The exclude repeats the partial index's condition: SQLite uses such an index only
        when the query states its condition word for word (PostgreSQL infers it from the equality)."""
        return self.filter(deleted_in=system).exclude(deleted_in="")

    def failed_reservations(self) -> CouplingQuerySet:
        """Pending couplings whose partner could not be created: no write of theirs can have landed."""
        return self.filter(pending=True, reserved_at__isnull=True)

    def prepare_restore(self, missing_side: str, now: datetime) -> int:
        """Reserve a new partner for records whose partner was deleted in `missing_side` ("bc" or "dataverse").

        A Dataverse partner is recreated under its old id (upsert by key). A Business Central partner gets a new
        id: the old one is cleared, and the reservation starts now, so the recovery of interrupted inserts only
        looks at records created from now on.
        """
        changes: dict[str, object] = {
            "pending": True,
            "reserved_at": now,
            "skipped": False,
            "last_error_to_dataverse": "",
            "last_error_from_dataverse": "",
            "synced_fields": {},  # the new partner is written whole: nothing of the old one is known to agree
        }
        if missing_side == BC:
            changes.update(bc_id=None, bc_etag="", bc_modified_on=None)
        else:
            changes.update(dataverse_etag="", dataverse_modified_on=None)
        return self.update(**changes)


class Coupling(models.Model):
    """A Business Central record and a Dataverse row kept in sync by one table mapping.

    The modified-on values are each side's own timestamp as it stood right after our last write, so our own
    writes are not seen as changes on the next run.

    Its states, for the crash-recovery protocol (docs/architecture.md "The states of a coupling"):
    - coupled: `pending` is false; both records exist.
    - reserved: `pending` and `reserved_at` set. The partner's id is chosen (where the API allows) and a write
      creating it may have happened since `reserved_at`: a rerun recovers that record instead of creating a second.
    - failed reservation: `pending` without `reserved_at`. Creating the partner failed for sure (the error is in
      `last_error_*`); it is retried at every run, and coupling the record by hand replaces it.
    """

    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="couplings")
    bc_id = models.UUIDField("Business Central id", null=True, blank=True)
    dataverse_id = models.UUIDField("Dataverse id", null=True, blank=True)
    bc_name = models.CharField("Business Central name", max_length=250, blank=True)
    dataverse_name = models.CharField("Dataverse name", max_length=250, blank=True)
    bc_modified_on = models.DateTimeField(null=True, blank=True)
    dataverse_modified_on = models.DateTimeField(null=True, blank=True)
    # ETags after our last write: a precise "changed since" test where modified-on has only second precision.
    bc_etag = models.CharField(max_length=200, blank=True)
    dataverse_etag = models.CharField(max_length=200, blank=True)
    last_result_to_dataverse = models.CharField(max_length=10, choices=SyncResult.choices, blank=True, default="")
    last_result_from_dataverse = models.CharField(max_length=10, choices=SyncResult.choices, blank=True, default="")
    last_job_to_dataverse = models.BigIntegerField(null=True, blank=True)
    last_job_from_dataverse = models.BigIntegerField(null=True, blank=True)
    # Per direction, like the results: "failed twice with the same error" must compare one direction's errors,
    # and a success in the other direction must not wipe this one's.
    last_error_to_dataverse = models.TextField(blank=True)
    last_error_from_dataverse = models.TextField(blank=True)
    skipped = models.BooleanField(default=False)
    # The skip policy (TableMapping.skip_after_failures): identical failures in a row per direction, and, once
    # skipped, since when and for which error class, so a run can un-skip the record when that cause is fixed.
    failures_to_dataverse = models.PositiveSmallIntegerField(default=0, editable=False)
    failures_from_dataverse = models.PositiveSmallIntegerField(default=0, editable=False)
    skipped_at = models.DateTimeField(null=True, blank=True, editable=False)
    skipped_error_class = models.CharField(max_length=30, blank=True, editable=False)
    # The target record's version when the record was skipped: a later version means someone changed it.
    skipped_target_etag = models.CharField(max_length=200, blank=True, editable=False)
    # What was last synchronized, per side and field: {"bc": {"city": "<fingerprint>"}, "dataverse": {...}}, so a
    # run tells which fields each side changed since and merges them (jobs/engine/values.py `fingerprint`). Empty
    # for a coupling not synchronized since this was added: it is compared record by record, as before.
    synced_fields = models.JSONField(default=dict, blank=True, editable=False)
    # The system ("bc" / "dataverse") where this pair's record was found deleted while carrying the deletion over
    # (deleting the partner, jobs/engine/deletions.py) has not succeeded yet: each run in that direction tries again,
    # under the skip policy and back-off of the error's class. Empty otherwise.
    deleted_in = models.CharField(max_length=20, blank=True, default="", editable=False)
    pending = models.BooleanField(default=False)
    # The direction a person chose for the pair's first synchronization ("couple, then synchronize to Dataverse"),
    # kept until a sync in that direction has succeeded: before that, neither record's version is known, so both
    # would look changed and the next run would report an update conflict instead of carrying out the choice.
    first_sync_direction = models.CharField(
        max_length=20,
        choices=[(Direction.TO_DATAVERSE, "To Dataverse"), (Direction.FROM_DATAVERSE, "From Dataverse")],
        blank=True,
        default="",
        help_text="Chosen for the first synchronization; cleared once it has succeeded.",
    )
    reserved_at = models.DateTimeField(
        null=True, blank=True, help_text="Since when a write creating the partner may have happened (pending only)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CouplingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["table_mapping", "bc_id"], condition=Q(bc_id__isnull=False), name="unique_bc_record_per_mapping"
            ),
            models.UniqueConstraint(
                fields=["table_mapping", "dataverse_id"],
                condition=Q(dataverse_id__isnull=False),
                name="unique_dataverse_row_per_mapping",
            ),
        ]
        indexes = [
            models.Index(fields=["table_mapping", "skipped"]),
            models.Index(fields=["table_mapping", "last_result_to_dataverse"]),
            models.Index(fields=["table_mapping", "last_result_from_dataverse"]),
            models.Index(fields=["bc_name"]),
            models.Index(fields=["dataverse_name"]),
            # Each run in a direction asks for the pairs whose deletion is still being carried over: a handful among
            # a million, found without reading the million (B at 1,000,000 coupled: 0.24 s for this query before).
            models.Index(
                fields=["table_mapping", "deleted_in"],
                condition=~Q(deleted_in=""),
                name="coupling_deletion_carry_over",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.table_mapping.name}: {self.bc_name or self.bc_id} <-> {self.dataverse_name or self.dataverse_id}"

    @staticmethod
    def result_field(direction: str) -> str:
        """The field holding the result of the last write in `direction` (to or from Dataverse)."""
        return "last_result_to_dataverse" if direction == Direction.TO_DATAVERSE else "last_result_from_dataverse"

    @staticmethod
    def failures_field(direction: str) -> str:
        """The field counting the identical failures in a row in `direction` (0 after a success)."""
        return "failures_to_dataverse" if direction == Direction.TO_DATAVERSE else "failures_from_dataverse"

    @staticmethod
    def error_field(direction: str) -> str:
        """The field holding the error of the last failed write in `direction` (empty after a success)."""
        return "last_error_to_dataverse" if direction == Direction.TO_DATAVERSE else "last_error_from_dataverse"

    def last_result(self, direction: str) -> str:
        return str(getattr(self, self.result_field(direction)))

    def last_error(self, direction: str) -> str:
        return str(getattr(self, self.error_field(direction)))

    # -- state changes of a synchronization (the engine saves them in bulk) --------------------------------------

    @property
    def reserved(self) -> bool:
        """A write creating the partner may have landed: look for it before creating it again."""
        return self.pending and self.reserved_at is not None

    def reserve(self, now: datetime, *, restart: bool = False) -> None:
        """Hold this coupling for a partner about to be created. An earlier reservation keeps its time (its write
        may have landed since); `restart` starts the window anew (the old partner is gone, a new one comes)."""
        self.pending = True
        if self.reserved_at is None or restart:
            self.reserved_at = now

    def succeed(self, direction: str, job_id: int) -> None:
        """The write in `direction` landed: coupled, without error."""
        self.pending = False
        self.reserved_at = None
        if self.first_sync_direction == direction:
            self.first_sync_direction = ""  # the chosen first synchronization is done
        setattr(self, self.error_field(direction), "")
        setattr(self, self.failures_field(direction), 0)
        self._set_result(direction, SyncResult.SUCCESS, job_id)

    def remember_synced(self, fingerprints: dict[str, dict[str, str]]) -> None:
        """Record the fields a write settled (both sides now agree on them); the others keep what they had."""
        merged = {side: dict(fields) for side, fields in (self.synced_fields or {}).items()}
        for side, fields in fingerprints.items():
            merged.setdefault(side, {}).update(fields)
        self.synced_fields = merged

    def skip(self, error_class: str, now: datetime, target_etag: str) -> None:
        """Leave this record out of runs until its cause is fixed or someone retries it."""
        self.skipped = True
        self.skipped_at = now
        self.skipped_error_class = error_class
        self.skipped_target_etag = target_etag

    def fail(self, direction: str, job_id: int, message: str, *, may_have_landed: bool) -> None:
        """The write in `direction` failed. One that may have landed (outcome unknown) keeps its reservation and
        leaves no error, so the next run looks for the record first; any other ends the reservation."""
        if may_have_landed and self.pending:
            message = ""
        else:
            self.reserved_at = None
        setattr(self, self.error_field(direction), message)
        self._set_result(direction, SyncResult.FAILURE, job_id)

    def resolved_by_hand(self, directions: list[str]) -> None:
        """A person chose each differing field's value and both records now hold it: no error, nothing skipped, and
        a success in each of `directions` (those the mapping syncs), as if a sync had just written them.

        The field fingerprints are forgotten: the chosen values are both sides' now, and until the next successful
        write records them the record is compared record by record (its versions were just stored)."""
        self.skipped = False
        self.skipped_at, self.skipped_error_class, self.skipped_target_etag = None, "", ""
        self.failures_to_dataverse = self.failures_from_dataverse = 0
        self.synced_fields = {}
        for direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE):
            setattr(self, self.error_field(direction), "")
            setattr(self, self.result_field(direction), SyncResult.SUCCESS if direction in directions else "")

    def _set_result(self, direction: str, result: str, job_id: int) -> None:
        if direction == Direction.TO_DATAVERSE:
            self.last_result_to_dataverse = result
            self.last_job_to_dataverse = job_id
        else:
            self.last_result_from_dataverse = result
            self.last_job_from_dataverse = job_id


class AmbiguousMatch(models.Model):
    """A record that match-based coupling could not pair on its own: several records match it.

    Kept with its candidates so an administrator can couple it by a click (Business Central only fails these).
    """

    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="ambiguous_matches")
    side = models.CharField(max_length=20, choices=ConnectionKind.choices, help_text="The system the record is in.")
    record_id = models.UUIDField()
    record_name = models.CharField(max_length=250, blank=True)
    candidates = models.JSONField(default=list, help_text='Records of the other system: [{"id": ..., "name": ...}]')
    job_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["table_mapping", "record_name"]
        verbose_name_plural = "ambiguous matches"
        constraints = [
            models.UniqueConstraint(
                fields=["table_mapping", "side", "record_id"], name="one_ambiguous_entry_per_record"
            )
        ]

    def __str__(self) -> str:
        return f"{self.record_name or self.record_id}: {len(self.candidates)} candidates"


class KeptRecord(models.Model):
    """A record left uncoupled on purpose: its partner was deleted, and the mapping's deletion policy for that system
    is "uncouple and keep the other record". Runs create no new partner for it (which would undo the deletion in
    the system it was deleted in) until someone couples it, synchronizes it by hand ("synchronize now"), or
    forgets the choice; every uncoupling forgets it too (coupling.services.couplings_uncouple)."""

    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="kept_records")
    side = models.CharField(max_length=20, choices=ConnectionKind.choices, help_text="The system the record is in.")
    record_id = models.UUIDField()
    record_name = models.CharField(max_length=250, blank=True)
    reason = models.TextField()
    job_id = models.BigIntegerField(null=True, blank=True, help_text="The run that uncoupled it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["table_mapping", "record_name"]
        verbose_name = "record kept uncoupled"
        verbose_name_plural = "records kept uncoupled"
        constraints = [
            models.UniqueConstraint(fields=["table_mapping", "side", "record_id"], name="one_kept_entry_per_record")
        ]

    def __str__(self) -> str:
        return f"{self.record_name or self.record_id} (kept uncoupled)"
