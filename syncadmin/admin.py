"""The admin composed once: every model of connectors, mappings, coupling, jobs and operations is registered here,
and only here.

Each app's admin module defines its ModelAdmin classes and registers nothing; `jobs.admin` adds the sync columns,
actions and pages to the mapping and coupling admins as mixins. Each class below names what it is made of: the mixin
list is the extension point, so no app replaces another's registration. (The sandbox registers its own models in
`sandbox/admin.py`: it is no part of the product.)
"""

from django.contrib import admin

from adminkit.admin import FitScreenMixin
from connectors import admin as connectors_admin
from connectors.models import Connection
from coupling import admin as coupling_admin
from coupling.models import AmbiguousMatch, Coupling, KeptRecord
from jobs.admin import errors, reconciliations, schedules, sync_jobs
from jobs.admin.couplings import CouplingSyncMixin
from jobs.admin.mapping_coupling import AmbiguousMatchCouplingMixin, TableMappingCouplingMixin
from jobs.admin.table_mappings import TableMappingSyncMixin
from jobs.models import Reconciliation, Schedule, SyncError, SyncJob, WebhookSubscription
from mappings import admin as mappings_admin
from mappings.models import MappingChange, TableMapping
from operations import admin as operations_admin
from operations.models import AlertChannel, AlertRule, Incident


@admin.register(Connection)
class ConnectionAdmin(FitScreenMixin, connectors_admin.ConnectionAdmin):
    pass


@admin.register(TableMapping)
class TableMappingAdmin(
    FitScreenMixin, TableMappingCouplingMixin, TableMappingSyncMixin, mappings_admin.TableMappingAdmin
):
    """Mapping editing, with the mapping's sync and coupling columns, actions and pages."""

    # The links right after the name: the list is wide, and these are what an admin looks for next.
    list_display = [
        "name_display",
        "related_links",
        "tables_display",
        "filters_display",
        "only_coupled",
        "dependency_names",
        "last_sync_display",
        "errors_display",
        "skipped_display",
    ]
    actions = [
        *mappings_admin.TableMappingAdmin.actions,
        *TableMappingSyncMixin.sync_actions,
        *TableMappingCouplingMixin.coupling_actions,
        reconciliations.reconcile,
    ]


@admin.register(MappingChange)
class MappingChangeAdmin(FitScreenMixin, mappings_admin.MappingChangeAdmin):
    pass


@admin.register(Coupling)
class CouplingAdmin(FitScreenMixin, CouplingSyncMixin, coupling_admin.CouplingAdmin):
    """Coupling browsing, with the sync actions and each pair's compare page (the record columns link to it)."""

    list_display = ["id", "table_mapping", "bc_record", "dataverse_record", "last_results", "skipped"]
    actions = [*coupling_admin.CouplingAdmin.actions, *CouplingSyncMixin.sync_actions]


@admin.register(AmbiguousMatch)
class AmbiguousMatchAdmin(FitScreenMixin, AmbiguousMatchCouplingMixin, coupling_admin.AmbiguousMatchAdmin):
    pass


@admin.register(KeptRecord)
class KeptRecordAdmin(FitScreenMixin, coupling_admin.KeptRecordAdmin):
    pass


@admin.register(SyncJob)
class SyncJobAdmin(FitScreenMixin, sync_jobs.SyncJobAdmin):
    pass


@admin.register(Reconciliation)
class ReconciliationAdmin(reconciliations.ReconciliationAdmin):
    pass


@admin.register(SyncError)
class SyncErrorAdmin(FitScreenMixin, errors.SyncErrorAdmin):
    pass


@admin.register(Schedule)
class ScheduleAdmin(FitScreenMixin, schedules.ScheduleAdmin):
    pass


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(FitScreenMixin, schedules.WebhookSubscriptionAdmin):
    pass


@admin.register(AlertChannel)
class AlertChannelAdmin(FitScreenMixin, operations_admin.AlertChannelAdmin):
    pass


@admin.register(AlertRule)
class AlertRuleAdmin(FitScreenMixin, operations_admin.AlertRuleAdmin):
    pass


@admin.register(Incident)
class IncidentAdmin(FitScreenMixin, operations_admin.IncidentAdmin):
    pass
