"""Integration table mappings and field mappings: which Business Central table syncs with which Dataverse table.

Names follow the two APIs: Business Central API v2.0 entity sets and properties (`customers`, `displayName`),
Dataverse Web API entity sets and column logical names (`accounts`, `name`).
"""

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.utils import timezone

from adminkit.times import admin_time
from connectors.choices import ConnectionKind
from connectors.odata import and_filters, eq
from mappings.choices import (
    DEFAULT_SKIP_AFTER,
    TRANSIENT_ERROR_CLASSES,
    DeletionConflictResolution,
    DeletionPolicy,
    Direction,
    UpdateConflictResolution,
)

# Business Central's integration solution keeps one row per Business Central company in this Dataverse table, and
# points the company lookup of accounts and contacts (bcbi_companyid) at it (domain.md 3.10).
COMPANY_ENTITY_SET = "cdm_companies"


class TableMapping(models.Model):
    """One Business Central table synchronized with one Dataverse table (BC's Integration Table Mapping)."""

    name = models.CharField(
        max_length=20, help_text="Short upper-case name, for example CUSTOMER; unique within its company."
    )
    company = models.ForeignKey(
        "connectors.Connection",
        verbose_name="Business Central company",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="table_mappings",
        limit_choices_to={"kind": ConnectionKind.BUSINESS_CENTRAL},
        help_text="The Business Central connection (one company) this mapping synchronizes. Blank: the only "
        "enabled Business Central connection.",
    )
    bc_entity_set = models.CharField(
        "Business Central table",
        max_length=100,
        help_text="API v2.0 entity set (customers), or a custom API page's as publisher/group/version/entitySet.",
    )
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
    record_priority = models.PositiveIntegerField(
        default=0,
        blank=True,
        help_text="When several mappings synchronize the same Business Central table, each record belongs to the first "
        "of them (lowest number) whose table filter it matches; the others leave it alone.",
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
    dataverse_company_field = models.CharField(
        "Dataverse company column",
        max_length=100,
        blank=True,
        help_text="Lookup to the row's Business Central company, for example bcbi_companyid. The company's rows are "
        "read as 'its company or none', and the rows it writes are stamped with it. Blank: the table has none.",
    )
    multi_company = models.BooleanField(
        "multi-company synchronization",
        default=False,
        help_text="Shared table (currencies, salespeople, customers of several companies): read every company's rows, "
        "and stamp the company on the rows this company creates only. Use match-based coupling so that a record "
        "two companies share is coupled, not created twice.",
    )
    skip_after_failures = models.JSONField(
        "skip after identical failures",
        default=dict,
        blank=True,
        help_text=(
            "Per error class, how many failures in a row with the same error skip a record; 0 never skips. "
            f"Classes left out: {DEFAULT_SKIP_AFTER}, as Business Central. Transient errors (throttling, timeouts, "
            'server errors) are never skipped. E.g. {"validation": 3, "conflict": 0}'
        ),
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
        ordering = ["name", "company"]
        constraints = [
            models.UniqueConstraint(fields=["company", "name"], name="tablemapping_company_name_uniq"),
            # NULL companies are all distinct to the constraint above: names without a company are unique by this.
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(company__isnull=True), name="tablemapping_name_without_company_uniq"
            ),
        ]

    def __str__(self):
        return self.name

    def skip_after(self, error_class: str) -> int:
        """Identical failures in a row after which a record failing with `error_class` is skipped; 0: never."""
        if error_class in TRANSIENT_ERROR_CLASSES:
            return 0
        return int((self.skip_after_failures or {}).get(error_class, DEFAULT_SKIP_AFTER))

    @property
    def label(self) -> str:
        """The name with the company, where there is one: each company has its own CUSTOMER."""
        return f"{self.name} ({self.company.name})" if self.company_id and self.company else self.name

    @property
    def stamps_company(self) -> bool:
        """The Dataverse table has a company column and the mapping belongs to a company."""
        return bool(self.company_id and self.dataverse_company_field)

    def company_reference(self) -> str | None:
        """The `@odata.bind` value naming this mapping's company row in Dataverse, once the row is known."""
        row_id = self.company.dataverse_company_id if self.stamps_company and self.company else None
        return f"/{COMPANY_ENTITY_SET}({row_id})" if row_id else None

    @property
    def dataverse_filter(self) -> str:
        """The Dataverse rows this mapping synchronizes: its integration table filter and, as Business Central
        does (domain.md 3.10), its company's rows or rows of no company, unless the mapping is multi-company."""
        return self.dataverse_rows_filter(self.integration_table_filter)

    def dataverse_rows_filter(self, integration_table_filter: str) -> str:
        """`integration_table_filter` narrowed to this mapping's company as `dataverse_filter` is (the "Test filter"
        page counts a filter not saved yet this way)."""
        if not self.stamps_company or self.multi_company or self.company is None:
            return integration_table_filter
        column = f"_{self.dataverse_company_field}_value"
        row_id = self.company.dataverse_company_id
        # Before the company's row exists in Dataverse no row can name it: "none" is all its company's rows.
        none = f"{column} eq null"
        term = none if row_id is None else f"{eq(column, row_id)} or {none}"
        return and_filters(integration_table_filter or None, term) or ""

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
    add_missing_options = models.BooleanField(
        default=False,
        help_text="To Dataverse: a Business Central value the value map lacks is appended as a new option of the "
        "Dataverse choice (InsertOptionValue), labelled with the value, and added to the value map. From Dataverse: an "
        "option the value map lacks becomes a record of the Business Central code table, and an entry of the map.",
    )
    bc_code_table = models.CharField(
        "Business Central code table",
        max_length=100,
        blank=True,
        help_text="From Dataverse with add missing options: the entity set of the codes (e.g. paymentTerms).",
    )
    # BC's "Not Null". Named for what it does to the user's data: see EMPTY_SOURCE_HELP.
    not_null = models.BooleanField(
        "empty source value keeps the target's",
        default=False,
        help_text="What an empty source value does. On (keep target): the target's value stays as it is; nothing is "
        "written to this field. Off (clear target): the empty value is written like any other, clearing the "
        "target's value. The default mappings keep the target's value on one-way fields, where the source system "
        "may simply not hold the value (Dataverse users without a phone number must not blank the salespeople's), "
        "and clear it on bidirectional fields, where clearing a value in one system is a change to carry over.",
    )
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


class NewRecordTemplate(models.Model):
    """One set of values for records a mapping creates in one system, chosen by a filter on the source record.

    Business Central 2024 wave 2 lets a mapping choose among configuration templates by a filter on the source
    record. A mapping's templates for a system are tried in position order; the first whose filter the source record
    matches (no filter: every record) applies, on top of the mapping's own values for new records in that system.
    """

    table_mapping = models.ForeignKey(TableMapping, on_delete=models.CASCADE, related_name="new_record_templates")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=60, blank=True, help_text="For people, e.g. Domestic customers.")
    target = models.CharField(
        "records created in",
        max_length=20,
        choices=[("bc", "Business Central"), ("dataverse", "Dataverse")],
        help_text="The system the new records are created in; the filter is on the other system's record.",
    )
    source_filter = models.TextField(
        "filter on the source record",
        blank=True,
        help_text="OData $filter on the record being copied, e.g. country eq 'NL'. Empty: every record.",
    )
    values = models.JSONField(default=dict, blank=True, help_text='JSON object, e.g. {"paymenttermscode": 2}')

    class Meta:
        ordering = ["table_mapping", "target", "position", "id"]
        verbose_name = "values for new records, by filter"
        verbose_name_plural = "values for new records, by filter"

    def __str__(self) -> str:
        return self.name or f"{self.get_target_display()} template {self.position}"


def touch_table_mapping(sender: type, instance: FieldMapping, **kwargs: object) -> None:
    """Move the table mapping's `updated_at` when one of its field mappings is saved or deleted."""
    TableMapping.objects.filter(pk=instance.table_mapping_id).update(updated_at=timezone.now())


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
        return f"{self.get_action_display()} by {who} at {admin_time(self.created_at)}"
