from __future__ import annotations

import uuid
from textwrap import shorten

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from adminkit.times import admin_time
from connectors.choices import ConnectionKind
from connectors.secrets import decrypt_secret, encrypt_secret
from jobs.choices import ErrorClass, ErrorState, JobKind, JobStatus, RequestedVia
from mappings.choices import Direction
from mappings.models import TableMapping

COUNTER_FIELDS = (
    "inserted",
    "modified",
    "deleted",
    "unchanged",
    "skipped",
    "failed",
    "waiting",
    "coupled",
    "uncoupled",
)
# The outcomes of a synchronization that add up to the records it read, each record counted once (a record coupled by
# matching during the run has an outcome of its own besides). A new outcome (a counter) joins this list.
OUTCOME_FIELDS = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed", "waiting", "uncoupled")
# How the job page names an outcome where its counter's name is not enough.
OUTCOME_LABELS = {"waiting": "waiting to retry"}
# The outcomes that mean a record went through (a run with failures and at least one of these partly failed).
SUCCESS_FIELDS = ("inserted", "modified", "deleted", "unchanged", "coupled", "uncoupled")


class SyncJob(models.Model):
    """One run of one table mapping in one direction (BC's Integration Synch. Job), as shown in the job log."""

    kind = models.CharField(max_length=20, choices=JobKind.choices, default=JobKind.MODIFIED)
    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="sync_jobs")
    direction = models.CharField(max_length=20, choices=Direction.choices)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    dry_run = models.BooleanField(default=False, help_text="A preview: planned, nothing written.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requested_via = models.CharField(
        max_length=30, choices=RequestedVia.choices, default=RequestedVia.USER, help_text="What started the job."
    )
    reconciliation = models.ForeignKey(
        "Reconciliation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        editable=False,
        help_text="The reconciliation whose bulk action started the job.",
    )
    rq_job_id = models.CharField(max_length=64, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    inserted = models.PositiveIntegerField(default=0)
    modified = models.PositiveIntegerField(default=0)
    # Coupled records found deleted in the run's source system and handled by the mapping's deletion policy (each a
    # record read, with this outcome: see OUTCOME_FIELDS and `counts_reconcile`).
    deleted = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # Records the run left for later because they failed transiently and their back-off has not ended
    # (jobs/engine/backoff.py): read, or due for a retry, yet neither written nor failed again.
    waiting = models.PositiveIntegerField(
        "waiting to retry", default=0, help_text="Records left for a later run: their back-off has not ended."
    )
    coupled = models.PositiveIntegerField(default=0)
    uncoupled = models.PositiveIntegerField(default=0)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True, help_text="Estimated records to process.")
    http_requests = models.PositiveIntegerField(default=0)
    http_requests_by_kind = models.JSONField(default=dict, blank=True)
    concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests the run had in flight at once for its latest page (pacing)."
    )
    throttle_wait_seconds = models.FloatField(
        default=0, help_text="Time the run waited because a service throttled it (429 Retry-After, resent parts)."
    )
    record_ids = models.JSONField(default=list, blank=True, help_text="Selected source records (selection runs).")
    cancel_requested = models.BooleanField(default=False)
    # The deletion safety stop: the source ids of the deletions this run held back, until an administrator confirms
    # them (a "confirmed deletions" job then carries them out).
    held_deletions = models.JSONField(default=list, blank=True, editable=False)
    deletions_confirmed_at = models.DateTimeField(null=True, blank=True, editable=False)
    message = models.TextField(blank=True)
    preview = models.JSONField(default=dict, blank=True, help_text="For a dry run: sample of field differences.")
    # Crash recovery (services.sync_runs_recover): the token of the mapping lock this run holds, so that the lock of
    # a run whose worker died is released, never one another run has taken since; and the run this one resumes.
    lock_token = models.CharField(max_length=64, blank=True, editable=False)
    resumed_from = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resumed_by",
        editable=False,
        help_text="The run whose worker stopped, which this run resumes (once: a resumed run is not resumed again).",
    )

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["table_mapping", "-queued_at"]),
            # The dashboard: each mapping's last finished run per direction, and the jobs finished in a chart's range.
            models.Index(fields=["table_mapping", "direction", "-finished_at"], name="syncjob_last_run"),
            # Every column the dashboard's charts read, so SQLite answers them from the index alone.
            models.Index(
                fields=[
                    "finished_at",
                    "table_mapping",
                    "dry_run",
                    "started_at",
                    "inserted",
                    "modified",
                    "deleted",
                    "failed",
                ],
                name="syncjob_finished_counts",
            ),
        ]
        permissions = [("run_sync", "Can run synchronizations and coupling jobs")]

    # What a preview would do, by the planner's action (the preview's "counts"), in the order the job page shows: each
    # record read in one of them, as the run's counters (a deletion handled is a record read, as in the run).
    # Fields merged are no outcome of their own (the preview's "merged", shown apart).
    PREVIEW_COUNTS = [
        ("insert", "Would insert"),
        ("update", "Would update"),
        ("conflicts", "Conflicts"),
        ("fail", "Would fail"),
        ("unchanged", "Unchanged"),
        ("skip", "Skipped"),
        ("waiting", "Waiting to retry"),
        ("uncouple", "Would uncouple"),
        ("delete", "Found deleted (deletion policy)"),
    ]

    def __str__(self):
        # No status here: the job page's title would go stale while its progress box refreshes.
        preview = " preview" if self.dry_run else ""
        return f"#{self.pk} {self.table_mapping.name} {self.get_direction_display()}{preview}"

    @property
    def preview_counts(self) -> list[tuple[str, int]]:
        counts = (self.preview or {}).get("counts", {})
        return [(label, counts.get(key, 0)) for key, label in self.PREVIEW_COUNTS]

    @property
    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTER_FIELDS}

    @property
    def requester(self) -> str:
        """Who or what asked for the job: the schedule, a change notification, the user (by name), the user through
        "Run now" on the schedule or through a reconciliation's bulk action (naming it)."""
        user = str(self.requested_by) if self.requested_by_id else "a user no longer recorded"
        if self.requested_via == RequestedVia.USER:
            return user if self.requested_by_id else "not recorded"
        if self.requested_via == RequestedVia.RUN_NOW:
            return f"{user}, with “Run now” on the schedule"
        if self.requested_via == RequestedVia.RECONCILIATION:
            source = f"reconciliation #{self.reconciliation_id}" if self.reconciliation_id else "a reconciliation"
            return f"{user}, from a bulk action of {source}"
        by = f" (asked by {self.requested_by})" if self.requested_by_id else ""
        return self.get_requested_via_display() + by

    @property
    def seconds_run(self) -> float | None:
        """Seconds from start to finish (to now while it runs); None before it starts."""
        if self.started_at is None:
            return None
        return max(((self.finished_at or timezone.now()) - self.started_at).total_seconds(), 0.0)

    @property
    def duration(self) -> str:
        seconds = self.seconds_run
        return "" if seconds is None else seconds_text(seconds)

    @property
    def progress_percent(self) -> int | None:
        if not self.progress_total:
            return None
        return min(100, round(100 * self.progress_done / self.progress_total))

    @property
    def pace(self) -> float | None:
        """Records read per second so far; None before the first page."""
        seconds = self.seconds_run
        return self.progress_done / seconds if seconds and self.progress_done else None

    @property
    def time_left(self) -> str:
        """What can truly be said of the time left of a running job ("" once it has finished).

        With a known total (a full synchronization counts its records first, a run of selected records knows them),
        the rest at the pace so far. A run of modified records learns its size only by reading: then no number is
        given as if known; the pace so far is, and, when the last comparable run read more than this one has yet,
        the time left if this one reads as many, said as such.
        """
        if self.finished_at or self.started_at is None:
            return ""
        pace = self.pace
        if self.progress_total and pace:
            left = max(self.progress_total - self.progress_done, 0) / pace
            return f"about {seconds_text(left)} left"
        if self.kind == JobKind.FULL and not self.progress_total:
            return "counting the records to synchronize first; the time left follows from their number"
        read = (
            f"{self.progress_done} record{'s' if self.progress_done != 1 else ''} read so far, {pace:.1f} per second"
            if pace
            else "no records read yet"
        )
        last = self.comparable_run()
        if last is None:
            why = " (the number of changes is known only once they are read)" if self.kind == JobKind.MODIFIED else ""
            return f"time left unknown: {read}{why}"
        last_text = f"the last such run, #{last.pk}, read {last.records_read} records in {last.duration}"
        if pace and last.records_read > self.progress_done:
            left = (last.records_read - self.progress_done) / pace
            return f"about {seconds_text(left)} left if it reads as many records as {last_text}; {read}"
        if not pace and last.seconds_run:
            left = max(last.seconds_run - (self.seconds_run or 0), 0)
            return f"about {seconds_text(left)} left if it takes as long as {last_text}; {read}"
        return f"time left unknown: {read}, more than {last_text}"

    def comparable_run(self) -> SyncJob | None:
        """The latest finished run of the same mapping, direction and kind (runs or previews alike) that read records:
        the yardstick for a run whose total is not known."""
        return (
            SyncJob.objects.filter(
                table_mapping_id=self.table_mapping_id,
                direction=self.direction,
                kind=self.kind,
                dry_run=self.dry_run,
                status__in=[JobStatus.SUCCEEDED, JobStatus.PARTLY_FAILED],
                progress_done__gt=0,
                finished_at__isnull=False,
            )
            .exclude(pk=self.pk)
            .only("pk", "progress_done", "started_at", "finished_at")
            .order_by("-finished_at")
            .first()
        )

    @property
    def records_read(self) -> int:
        return self.progress_done

    @property
    def outcomes(self) -> list[tuple[str, int]]:
        """What became of the records the job read, as (outcome, records): they add up to the records read.

        A preview: what each would do. Match-based coupling: each pair coupled is two records, one per system; an
        ambiguous record counts as failed and a record without a match as skipped.
        """
        if self.dry_run:
            counts = (self.preview or {}).get("counts", {})
            return [(label.lower(), counts.get(key, 0)) for key, label in self.PREVIEW_COUNTS]
        if self.kind == JobKind.COUPLING:
            return [
                ("coupled (two records a pair)", 2 * self.coupled),
                ("ambiguous", self.failed),
                ("without a match", self.skipped),
            ]
        return [(OUTCOME_LABELS.get(name, name), getattr(self, name)) for name in OUTCOME_FIELDS]

    @property
    def outcomes_total(self) -> int:
        return sum(count for _, count in self.outcomes)

    @property
    def counts_reconcile(self) -> bool:
        return self.records_read == self.outcomes_total

    @property
    def every_record_failed(self) -> bool:
        """Records failed and none went through: a skipped record (out of scope, or without a match) is no success,
        so failed + skipped with nothing written, coupled or found unchanged is a failed run, of every kind."""
        return self.failed > 0 and not any(getattr(self, name) for name in SUCCESS_FIELDS)


def seconds_text(seconds: float) -> str:
    """A duration as people say it: "20 seconds", "3 minutes 5 seconds", "2 hours 10 minutes"."""
    whole = int(round(seconds))
    if whole < 1:
        return "less than a second"
    if whole < 60:
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}" + (
            f" {secs} second{'s' if secs != 1 else ''}" if secs else ""
        )
    hours, minutes = divmod(minutes, 60)
    return f"{hours} hour{'s' if hours != 1 else ''}" + (
        f" {minutes} minute{'s' if minutes != 1 else ''}" if minutes else ""
    )


class SyncErrorQuerySet(models.QuerySet["SyncError"]):
    """The error states' transitions (jobs.choices.ErrorState), each one UPDATE for any number of errors."""

    def open(self) -> SyncErrorQuerySet:
        """What is wrong now: the errors every count and the error list show by default."""
        return self.filter(state=ErrorState.OPEN)

    def of_records(self, mapping_id: int, direction: str, source_ids) -> SyncErrorQuerySet:
        """The errors of these source records of a mapping in one direction (the record an error is about is its
        source record: a failed insert has no target id yet)."""
        source_attr = "bc_id" if direction == Direction.TO_DATAVERSE else "dataverse_id"
        return self.filter(table_mapping_id=mapping_id, direction=direction, **{f"{source_attr}__in": source_ids})

    def of_run(self, mapping_id: int, direction: str) -> SyncErrorQuerySet:
        """The errors of a whole run of a mapping in one direction (a run that stopped), which name no record."""
        return self.filter(table_mapping_id=mapping_id, direction=direction, bc_id=None, dataverse_id=None)

    def close(self, state: str, *, job_id: int | None = None, user=None, now=None) -> int:
        """Move the open ones among these errors to `state`; returns how many moved. Errors not open stay as they
        are: an error leaves OPEN once and its history is kept."""
        assert state != ErrorState.OPEN
        return self.open().update(
            state=state, resolved_at=now or timezone.now(), resolved_by_job_id=job_id, resolved_by=user
        )


class SyncError(models.Model):
    """A record that failed in a sync job, with both records' ids and names and a classified reason.

    `state` says whether it is still wrong now (see jobs.choices.ErrorState); `resolved_at`, `resolved_by_job` and
    `resolved_by` say when and by what it left OPEN.
    """

    job = models.ForeignKey(SyncJob, on_delete=models.CASCADE, related_name="errors")
    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="sync_errors")
    direction = models.CharField(max_length=20, choices=Direction.choices)
    bc_id = models.UUIDField("Business Central id", null=True, blank=True)
    dataverse_id = models.UUIDField("Dataverse id", null=True, blank=True)
    bc_name = models.CharField("Business Central name", max_length=250, blank=True)
    dataverse_name = models.CharField("Dataverse name", max_length=250, blank=True)
    error_class = models.CharField(max_length=30, choices=ErrorClass.choices, db_index=True)
    message = models.TextField()
    detail = models.TextField(blank=True, help_text="Remote code, response excerpt, trace.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # A transient failure's back-off across runs (jobs/engine/backoff.py): its failure in a row (1, 2, ...) and when
    # runs retry the record next (a full synchronization or "synchronize now" does not wait). Empty otherwise.
    retry_attempt = models.PositiveSmallIntegerField(default=0, editable=False)
    next_retry_at = models.DateTimeField("next retry at", null=True, blank=True, editable=False)
    state = models.CharField(max_length=20, choices=ErrorState.choices, default=ErrorState.OPEN, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="When it stopped being open.")
    resolved_by_job = models.ForeignKey(
        SyncJob,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resolved_errors",
        editable=False,
        help_text="The run that synchronized the record without error, or whose newer error superseded this one.",
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        help_text="The person who resolved it by hand.",
    )

    objects = SyncErrorQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["table_mapping", "-created_at"]),
            # Closing a page's records' open errors (the saver) and counting the open ones per mapping and class
            # (dashboard, mapping list) read only open rows: partial indexes stay as small as what is wrong now.
            models.Index(
                fields=["table_mapping", "direction", "bc_id"],
                condition=models.Q(state="open"),
                name="syncerror_open_bc",
            ),
            models.Index(
                fields=["table_mapping", "direction", "dataverse_id"],
                condition=models.Q(state="open"),
                name="syncerror_open_dataverse",
            ),
            models.Index(
                fields=["table_mapping", "error_class"],
                condition=models.Q(state="open"),
                name="syncerror_open_mapping_class",
            ),
            # The dashboard counts errors by mapping and class, and charts them by hour and class, from these alone.
            models.Index(fields=["table_mapping", "error_class"], name="syncerror_mapping_class"),
            models.Index(fields=["created_at", "error_class"], name="syncerror_created_class"),
        ]

    def __str__(self):
        # Cut between words and marked so: "...record for this record:" read as the whole message.
        return f"{self.table_mapping.name}: {shorten(self.message, 80, placeholder=' …')}"


# -- Scheduling: one schedule per table mapping, and webhook subscriptions that wake it ----------------------


class ScheduleState(models.TextChoices):
    READY = "ready", "Ready"
    RUNNING = "running", "Running"
    ON_HOLD = "on_hold", "On hold (inactivity timeout)"


class Schedule(models.Model):
    """When a mapping's modified records are synchronized (BC's recurring job queue entry per mapping).

    The scheduler tick claims a due schedule with one conditional UPDATE, so two scheduler processes never start the
    same run twice. Paused = not enabled; failing = failed_attempts reached max_attempts (it still retries).
    """

    table_mapping = models.OneToOneField(TableMapping, on_delete=models.CASCADE, related_name="schedule")
    enabled = models.BooleanField(default=True, help_text="Off: the schedule is paused and starts no run.")
    minutes_between_runs = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Time from the end of one run to the next."
    )
    inactivity_timeout_minutes = models.PositiveIntegerField(
        default=720,
        validators=[MinValueValidator(5)],
        help_text="After a run that changed nothing, the schedule waits this long (unless a change wakes it).",
    )
    max_attempts = models.PositiveIntegerField(
        "maximum number of attempts",
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Failed runs in a row before the schedule shows as failing.",
    )
    wake_on_change = models.BooleanField(
        default=True,
        help_text="A change in either system ends the inactivity hold: notified, or found by the check made at each "
        "interval while on hold (one small request per system).",
    )
    webhook_debounce_seconds = models.PositiveIntegerField(
        "change notification delay (seconds)",
        default=5,
        validators=[MaxValueValidator(3600)],
        help_text="Changes notified within this delay are synchronized together in one run.",
    )
    state = models.CharField(max_length=20, choices=ScheduleState.choices, default=ScheduleState.READY)
    next_run_at = models.DateTimeField(default=timezone.now, db_index=True)
    run_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    run_job_ids = models.JSONField(default=list, blank=True, editable=False, help_text="Jobs of the current run.")
    woken_at = models.DateTimeField(null=True, blank=True, editable=False)
    checked_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the hold last checked both systems for changes."
    )
    # Named for what it is: the list's "last finished at" read as the mapping's last run, and stayed "-" beside runs
    # an administrator started by hand.
    last_finished_at = models.DateTimeField("last scheduled run finished", null=True, blank=True, editable=False)
    failed_attempts = models.PositiveIntegerField(default=0, editable=False)
    last_message = models.TextField(blank=True, editable=False)
    paused_reason = models.CharField(
        max_length=500, blank=True, editable=False, help_text="Why it was paused, when an alert rule paused it."
    )

    class Meta:
        ordering = ["table_mapping__name"]

    def __str__(self):
        return f"{self.table_mapping.name} schedule"

    @property
    def is_failing(self) -> bool:
        return self.failed_attempts >= self.max_attempts

    @property
    def status(self) -> str:
        """What the admin shows: paused, failing, running, on hold until ..., ready."""
        if not self.enabled:
            return f"Paused: {self.paused_reason}" if self.paused_reason else "Paused"
        if self.is_failing:
            return f"Failing ({self.failed_attempts} failed runs in a row)"
        if self.state == ScheduleState.RUNNING:
            return "Running"
        if self.state == ScheduleState.ON_HOLD:
            until = admin_time(self.next_run_at)
            if not self.wake_on_change:
                return f"On hold until {until}"
            since = self.quiet_since
            checked = f" (last checked {admin_time(self.checked_at)})" if self.checked_at else ""
            return (
                f"Idle: checking every {self.minutes_between_runs} min, no changes since "
                f"{admin_time(since)}{checked}; runs at once on a change, else at {until}"
                if since
                else f"Idle: checking every {self.minutes_between_runs} min; runs at once on a change, else at {until}"
            )
        return "Ready"

    @property
    def quiet_since(self):
        """The last change the runs read (the later of the two watermarks): nothing changed after it since."""
        marks = [m for m in (self.table_mapping.bc_watermark, self.table_mapping.dataverse_watermark) if m]
        return max(marks) if marks else self.last_finished_at


class SubscriptionStatus(models.TextChoices):
    PENDING = "pending", "Being created"
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed"


class WebhookSubscription(models.Model):
    """A change-notification subscription in one system for one mapping's table.

    `token` names our receiver URL and is not a secret; `secret` (Business Central's clientState or the Dataverse
    secret header) is stored encrypted, compared in constant time and never shown.
    """

    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="webhook_subscriptions")
    side = models.CharField(max_length=20, choices=ConnectionKind.choices)
    status = models.CharField(max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.PENDING)
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    secret_encrypted = models.TextField(editable=False)
    notification_url = models.URLField(max_length=500, editable=False)
    remote_id = models.CharField(max_length=200, blank=True, editable=False, help_text="The subscription's id there.")
    resource = models.CharField(max_length=500, blank=True, editable=False)
    etag = models.CharField(max_length=200, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Empty: does not expire.")
    renewed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_notification_at = models.DateTimeField(null=True, blank=True, editable=False)
    notifications_received = models.PositiveIntegerField(default=0, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["table_mapping__name", "side"]
        constraints = [models.UniqueConstraint(fields=["table_mapping", "side"], name="one_subscription_per_side")]

    def __str__(self):
        return f"{self.table_mapping.name} {self.get_side_display()} notifications"

    def __repr__(self):
        return f"<WebhookSubscription {self.pk} {self.side} {self.table_mapping_id}>"

    @property
    def secret(self) -> str:
        return decrypt_secret(self.secret_encrypted)

    def set_secret(self, plain: str) -> None:
        self.secret_encrypted = encrypt_secret(plain)


class Reconciliation(models.Model):
    """One comparison of a mapping's two tables with its couplings (jobs/reconciliation): counts and findings.

    `counts` holds exact figures (records under each side's filter, coupled pairs, orphans by the side that is gone,
    uncoupled records per side and how many of them have a match-field partner, drifted pairs in the sample);
    `findings` the ids the bulk actions work on: orphan couplings, drifted couplings.
    """

    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="reconciliations")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    scheduled = models.BooleanField(default=False, help_text="Started by the daily schedule, not by a person.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    queued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    findings = models.JSONField(default=dict, blank=True)
    http_requests = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [models.Index(fields=["table_mapping", "-queued_at"])]

    def __str__(self):
        return f"Reconciliation #{self.pk} of {self.table_mapping.name}"

    @property
    def duration(self) -> str:
        """How long it ran, as a job page says it ("20 seconds": Django's timesince said "0 minutes")."""
        if self.started_at is None or self.finished_at is None:
            return ""
        return seconds_text(max((self.finished_at - self.started_at).total_seconds(), 0.0))
