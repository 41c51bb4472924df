"""Integration table mappings and field mappings: which Business Central table syncs with which Dataverse table.

Names follow the two APIs: Business Central API v2.0 entity sets and properties (`customers`, `displayName`),
Dataverse Web API entity sets and column logical names (`accounts`, `name`).
"""

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models

from mappings.choices import DeletionConflictResolution, DeletionPolicy, Direction, UpdateConflictResolution


class TableMapping(models.Model):
    """One Business Central table synchronized with one Dataverse table (BC's Integration Table Mapping)."""

    name = models.CharField(max_length=20, unique=True, help_text="Short upper-case name, for example CUSTOMER.")
    bc_entity_set = models.CharField("Business Central table", max_length=100, help_text="API v2.0 entity set.")
    dataverse_entity_set = models.CharField("Dataverse table", max_length=100, help_text="Web API entity set.")
    dataverse_primary_key = models.CharField(max_length=100, help_text="Primary id column, for example accountid.")
    bc_name_field = models.CharField(max_length=100, default="displayName", help_text="Shown as the record's name.")
    dataverse_name_field = models.CharField(max_length=100, default="name", help_text="Shown as the row's name.")
    direction = models.CharField(max_length=20, choices=Direction.choices, default=Direction.BIDIRECTIONAL)
    table_filter = models.TextField(
        blank=True, help_text="OData $filter on Business Central records, for example: blocked eq ' '"
    )
    integration_table_filter = models.TextField(
        blank=True, help_text="OData $filter on Dataverse rows, for example: statecode eq 0"
    )
    sync_only_coupled = models.BooleanField(
        "synchronize only coupled records",
        default=True,
        help_text="When off, uncoupled source records get a new record in the other system, and are coupled to it.",
    )
    dependencies = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="dependents", help_text="Mappings that must sync first."
    )
    update_conflict_resolution = models.CharField(
        max_length=30, choices=UpdateConflictResolution.choices, default=UpdateConflictResolution.NONE, blank=True
    )
    deletion_conflict_resolution = models.CharField(
        max_length=30, choices=DeletionConflictResolution.choices, default=DeletionConflictResolution.NONE, blank=True
    )
    # Deletions (beyond Business Central, which never propagates them), per direction: the field named "to Dataverse"
    # says what happens to the Dataverse row when its Business Central record was deleted, and the other way round.
    deletions_to_dataverse = models.CharField(
        "when a Business Central record is deleted",
        max_length=20,
        choices=DeletionPolicy.choices,
        default=DeletionPolicy.REPORT,
        blank=True,
        help_text="What happens to its coupled Dataverse row.",
    )
    deletions_from_dataverse = models.CharField(
        "when a Dataverse row is deleted",
        max_length=20,
        choices=DeletionPolicy.choices,
        default=DeletionPolicy.REPORT,
        blank=True,
        help_text="What happens to its coupled Business Central record.",
    )
    deletion_safety_percent = models.PositiveSmallIntegerField(
        "deletion safety stop (%)",
        default=5,
        validators=[MaxValueValidator(100)],
        help_text=(
            "A run that would delete more than this share of the mapping's coupled records deletes nothing and waits "
            "for an administrator to confirm."
        ),
    )
    bc_new_record_values = models.JSONField(
        "values for new Business Central records",
        default=dict,
        blank=True,
        help_text='JSON object, e.g. {"type": "Company"}',
    )
    dataverse_new_record_values = models.JSONField(
        "values for new Dataverse rows", default=dict, blank=True, help_text='JSON object, e.g. {"customertypecode": 3}'
    )
    sync_after_match_coupling = models.BooleanField("synchronize after match-based coupling", default=False)
    create_new_if_no_match = models.BooleanField("create new in case of no match", default=False)
    bc_watermark = models.DateTimeField(
        "Business Central watermark",
        null=True,
        blank=True,
        editable=False,
        help_text="Latest lastModifiedDateTime seen on Business Central (capped at the run's start).",
    )
    dataverse_watermark = models.DateTimeField(
        "Dataverse watermark",
        null=True,
        blank=True,
        editable=False,
        help_text="Latest modifiedon seen on Dataverse (capped at the run's start).",
    )
    # Deletion detection state (runtime, not configuration).
    dataverse_delta_link = models.TextField(
        blank=True, editable=False, help_text="Dataverse change tracking: where the next run reads deleted rows from."
    )
    bc_deletions_checked_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Last existence check of the coupled Business Central ids."
    )
    bc_deletion_check_due = models.BooleanField(
        default=False, editable=False, help_text="A deleted notification came: the next run checks the coupled ids."
    )
    is_default = models.BooleanField(default=False, editable=False, help_text="One of the default mappings.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def syncs_to_dataverse(self) -> bool:
        return self.direction in (Direction.BIDIRECTIONAL, Direction.TO_DATAVERSE)

    @property
    def syncs_from_dataverse(self) -> bool:
        return self.direction in (Direction.BIDIRECTIONAL, Direction.FROM_DATAVERSE)


class FieldMappingQuerySet(models.QuerySet):
    def match_criteria(self):
        """The enabled field mappings records are matched on (both sides named), by priority then position."""
        return (
            self.filter(use_for_matching=True, enabled=True)
            .exclude(bc_field="")
            .exclude(dataverse_field="")
            .order_by("match_priority", "position", "id")
        )


class FieldMapping(models.Model):
    """One Business Central field synchronized with one Dataverse column (BC's Integration Field Mapping).

    A blank side with a constant value writes that constant to the other side.
    """

    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="field_mappings")
    position = models.PositiveIntegerField(default=0)
    bc_field = models.CharField("Business Central field", max_length=100, blank=True)
    dataverse_field = models.CharField("Dataverse column", max_length=100, blank=True)
    direction = models.CharField(max_length=20, choices=Direction.choices, default=Direction.BIDIRECTIONAL)
    constant_value = models.CharField(max_length=250, blank=True)
    enabled = models.BooleanField(default=True)
    transformation = models.JSONField(
        default=list, blank=True, help_text='Chain of rules, e.g. [{"rule": "trim"}, {"rule": "uppercase"}]'
    )
    value_map = models.JSONField(
        default=dict, blank=True, help_text='Business Central value to Dataverse value, e.g. {"NET30": 1}'
    )
    lookup_mapping = models.ForeignKey(
        TableMapping,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="lookups_through",
        help_text="Resolve the value through this mapping's couplings (for example CURRENCY).",
    )
    clear_value_on_failed_lookup = models.BooleanField(default=False)
    not_null = models.BooleanField(default=False, help_text="Skip the transfer when the new value would be empty.")
    update_conflict_resolution = models.CharField(
        max_length=30,
        choices=UpdateConflictResolution.choices,
        blank=True,
        default="",
        help_text="Overrides the table mapping's policy for this field.",
    )
    use_for_matching = models.BooleanField("use for match-based coupling", default=False)
    case_sensitive_matching = models.BooleanField(default=False)
    match_priority = models.PositiveIntegerField(default=0)

    objects = FieldMappingQuerySet.as_manager()

    class Meta:
        ordering = ["table_mapping", "position", "id"]

    def __str__(self):
        arrow = {Direction.BIDIRECTIONAL: "<->", Direction.TO_DATAVERSE: "->", Direction.FROM_DATAVERSE: "<-"}
        left = self.bc_field or repr(self.constant_value)
        right = self.dataverse_field or repr(self.constant_value)
        return f"{left} {arrow[self.direction]} {right}"


class MappingChange(models.Model):
    """A recorded change to the mapping configuration made outside the admin's change form (reset, import).

    Edits through the admin's change form are recorded by Django's LogEntry; resets and imports are recorded here,
    and also as LogEntry rows on each mapping when a user made them, so the mapping's History shows them.
    """

    class Action(models.TextChoices):
        RESET = "reset", "Reset to defaults"
        IMPORT = "import", "Import"

    action = models.CharField(max_length=20, choices=Action.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor = models.CharField(max_length=150, blank=True, help_text="Who, when there is no user (e.g. a command).")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    mapping_names = models.CharField(max_length=500, blank=True, help_text="Mappings changed.")
    summary = models.TextField(help_text="What changed, line by line.")
    changes = models.JSONField(default=list, blank=True, help_text="The differences applied, per mapping.")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        who = self.user or self.actor or "someone"
        return f"{self.get_action_display()} by {who} at {self.created_at:%Y-%m-%d %H:%M}"
