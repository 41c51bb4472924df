"""Alert rules an administrator sets, the channels alerts go to, and the incidents they open and resolve."""

from django.core.exceptions import ValidationError
from django.db import models

from connectors.models import Connection
from jobs.choices import ErrorClass
from mappings.models import TableMapping


class ChannelKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook (Slack, Teams, any JSON receiver)"


class AlertChannel(models.Model):
    """Where alerts go: e-mail addresses (Django's mail settings) or a webhook URL that receives JSON.

    A webhook URL of Slack or Teams carries its own key in the URL: it is never shown in lists nor logged.
    """

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    enabled = models.BooleanField(default=True)
    email_to = models.CharField(
        "e-mail recipients", max_length=1000, blank=True, help_text="Comma-separated addresses (e-mail channels)."
    )
    webhook_url = models.URLField(
        max_length=1000,
        blank=True,
        help_text="Slack or Teams incoming webhook URL, or any receiver of JSON posts (webhook channels).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<AlertChannel {self.pk} {self.kind} {self.name!r}>"  # never the URL: it holds the webhook's key

    @property
    def recipients(self) -> list[str]:
        return [address.strip() for address in self.email_to.split(",") if address.strip()]

    def clean(self) -> None:
        if self.kind == ChannelKind.EMAIL and not self.recipients:
            raise ValidationError({"email_to": "Give at least one e-mail address."})
        if self.kind == ChannelKind.WEBHOOK and not self.webhook_url:
            raise ValidationError({"webhook_url": "Give the webhook URL."})
        if self.kind == ChannelKind.WEBHOOK and not self.webhook_url.lower().startswith(("https://", "http://")):
            raise ValidationError({"webhook_url": "Use an http:// or https:// URL."})


class RuleKind(models.TextChoices):
    RUN_FAILED = "run_failed", "A run failed"
    ERRORS = "errors", "N new errors within M minutes"
    NO_SUCCESS = "no_success", "No successful run for a while"
    STALLED = "stalled", "A job running without progress"
    THROTTLED = "throttled", "Throttled answers above P% of requests"
    TOKEN = "token", "A connection's token cannot be obtained"


# What `threshold` and `window_minutes` mean for each kind (the admin shows this, and clean() checks it).
RULE_PARAMETERS = {
    RuleKind.RUN_FAILED: "The latest run of a mapping failed; resolved by its next run that does not fail.",
    RuleKind.ERRORS: "threshold = N errors (of the class, or any) recorded within the last window_minutes.",
    RuleKind.NO_SUCCESS: "window_minutes = how long without a successful (or partly failed) run, e.g. 360 for 6 hours.",
    RuleKind.STALLED: "window_minutes = how long a running job may go without its progress moving.",
    RuleKind.THROTTLED: "threshold = P percent of requests retried (429 and other transient answers) within the "
    "last window_minutes (at least 10 requests).",
    RuleKind.TOKEN: "A token is requested for every enabled connection at most once per window_minutes.",
}


class AlertRule(models.Model):
    """A condition watched every 30 seconds; each mapping or connection it holds for is one incident."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=RuleKind.choices)
    enabled = models.BooleanField(default=True)
    table_mapping = models.ForeignKey(
        TableMapping,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="alert_rules",
        help_text="Empty: every mapping (each one its own incident). Not used by the token rule.",
    )
    error_class = models.CharField(
        max_length=30, choices=ErrorClass.choices, blank=True, help_text="Errors rule: empty counts every class."
    )
    threshold = models.PositiveIntegerField(
        null=True, blank=True, help_text="N errors (errors rule) or P percent (throttled rule)."
    )
    window_minutes = models.PositiveIntegerField(
        default=60, help_text="M minutes, or H hours × 60 (no successful run); see the kind's description."
    )
    pause_schedule = models.BooleanField(
        "pause the mapping's schedule",
        default=False,
        help_text="When the rule fires for a mapping, pause its schedule (the reason is shown on the schedule). "
        "Resume it by hand once the cause is fixed.",
    )
    channels = models.ManyToManyField(AlertChannel, blank=True, related_name="rules")
    # The stalled rule's memory of each running job's progress: {job id: [progress, first seen at (ISO)]}.
    watch_state = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self) -> None:
        if self.kind in (RuleKind.ERRORS, RuleKind.THROTTLED) and not self.threshold:
            raise ValidationError({"threshold": RULE_PARAMETERS[RuleKind(self.kind)]})
        if self.kind == RuleKind.THROTTLED and self.threshold and self.threshold > 100:
            raise ValidationError({"threshold": "A percentage: at most 100."})
        if not self.window_minutes:
            raise ValidationError({"window_minutes": "At least 1 minute."})


class Incident(models.Model):
    """One firing of one rule for one subject (a mapping, a connection): alerted once, and once when resolved."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    subject = models.CharField(max_length=100, help_text="What it is about: mapping:<id> or connection:<id>.")
    subject_name = models.CharField(max_length=200)
    table_mapping = models.ForeignKey(TableMapping, null=True, blank=True, on_delete=models.CASCADE)
    connection = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.CASCADE)
    summary = models.TextField()
    opened_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    schedule_paused = models.BooleanField(default=False)
    delivery_problems = models.TextField(blank=True, help_text="Channels that could not be reached, and why.")

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # Two evaluations at once (a slow one and the next tick) cannot open the same incident twice.
            models.UniqueConstraint(
                fields=["rule", "subject"], condition=models.Q(resolved_at=None), name="one_open_incident_per_subject"
            )
        ]

    def __str__(self):
        return f"{self.rule.name}: {self.subject_name}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
