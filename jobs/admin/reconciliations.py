"""Reconciliations: the list, the result page with the counts and the bulk actions, and the mapping list's
"Reconcile" action. Each action calls one service of jobs/reconciliation/services.py, after a confirmation page that
says how many records it will touch and how (jobs/admin/confirm.py)."""

from dataclasses import replace

from django.contrib import admin, messages
from django.template.loader import render_to_string
from django.utils.html import format_html, format_html_join

from connectors.models import Connection
from connectors.types import ConnectorError
from jobs.admin.confirm import (
    Confirmation,
    action_hidden_fields,
    confirmed,
    drift_confirmation,
    match_coupling_confirmation,
    orphan_survivors_confirmation,
    render_confirmation,
    uncouple_confirmation,
)
from jobs.admin.coupled_records import connected_clients
from jobs.admin.links import job_links
from jobs.models import Reconciliation, SyncJob
from jobs.permissions import RunSyncPermissionMixin
from jobs.reconciliation.services import (
    reconciliation_apply_deletion_policy,
    reconciliation_couple_by_match,
    reconciliation_drifted_records,
    reconciliation_enqueue,
    reconciliation_orphan_couplings,
    reconciliation_orphan_survivors,
    reconciliation_resync_drift,
    reconciliation_uncouple_orphans,
)
from jobs.services import SyncNotStarted

# The result page's counts, in its order: (key, label).
COUNT_LABELS = [
    ("bc_records", "Business Central records under the filter"),
    ("dataverse_records", "Dataverse rows under the filter"),
    ("coupled", "Coupled pairs"),
    ("orphans", "Orphan couplings (a partner no longer exists)"),
    ("orphans_bc_gone", "… the Business Central record is gone"),
    ("orphans_dataverse_gone", "… the Dataverse row is gone"),
    ("orphans_both_gone", "… both are gone"),
    ("uncoupled_bc", "Uncoupled Business Central records"),
    ("uncoupled_bc_with_match", "… with a match-field partner"),
    ("uncoupled_dataverse", "Uncoupled Dataverse rows"),
    ("uncoupled_dataverse_with_match", "… with a match-field partner"),
    ("drift_checked", "Unchanged coupled pairs compared (a sample)"),
    ("drift", "… whose mapped fields differ (drift)"),
]


@admin.action(description="Reconcile (count orphans, uncoupled records and drift)", permissions=["run_sync"])
def reconcile(modeladmin, request, queryset):
    for mapping in queryset:
        reconciliation = reconciliation_enqueue(mapping=mapping, user=request.user)
        modeladmin.message_user(
            request, format_html("{}: reconciliation queued, {}.", mapping.name, reconciliation_link(reconciliation))
        )


def reconciliation_link(reconciliation: Reconciliation) -> str:
    return format_html(
        '<a href="/admin/jobs/reconciliation/{}/change/">reconciliation #{}</a>', reconciliation.pk, reconciliation.pk
    )


def jobs_text(jobs: list[SyncJob]) -> str:
    return ", ".join(f"#{job.pk}" for job in jobs)


class ReconciliationAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    list_display = ["id", "table_mapping", "status", "scheduled", "queued_at", "finished_at", "summary"]
    list_filter = ["status", "table_mapping", "scheduled"]
    list_select_related = ["table_mapping"]
    readonly_fields = ("result", "table_mapping", "status", "started_by", "jobs_started", "queued_at", "finished_at")
    fields = readonly_fields
    actions = [
        "uncouple_orphans",
        "apply_deletion_policy_to_orphans",
        "couple_uncoupled_by_match",
        "resynchronize_drift",
    ]

    change_form_template = "admin/jobs/reconciliation/change_form.html"

    def has_add_permission(self, request):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The result page's buttons post to the list's actions, which check `jobs.run_sync` again.
        extra_context = {**(extra_context or {}), "can_act": self.has_run_sync_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_change_permission(self, request, obj=None):
        return False

    # One field for who started it: the "scheduled" flag's help text ("Started by the daily schedule") showed under
    # an empty value beside the user who had asked.
    @admin.display(description="started by")
    def started_by(self, obj):
        if obj.scheduled:
            return "the daily schedule"
        return str(obj.requested_by) if obj.requested_by_id else "not recorded"

    @admin.display(description="jobs started from it")
    def jobs_started(self, obj):
        jobs = list(obj.jobs.select_related("table_mapping").order_by("pk"))
        return job_links(jobs) if jobs else "none yet"

    @admin.display(description="findings")
    def summary(self, obj):
        counts = obj.counts or {}
        if not counts:
            return obj.message or "-"
        return (
            f"{counts.get('coupled', 0)} coupled, {counts.get('orphans', 0)} orphans, "
            f"{counts.get('uncoupled_bc', 0)} + {counts.get('uncoupled_dataverse', 0)} uncoupled, "
            f"{counts.get('drift', 0)} drifted"
        )

    @admin.display(description="result")
    def result(self, obj):
        counts = obj.counts or {}
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((lbl, counts.get(k, 0)) for k, lbl in COUNT_LABELS)
        )
        return render_to_string(
            "admin/jobs/reconciliation/result.html",
            {"reconciliation": obj, "rows": rows, "drift": (obj.findings or {}).get("drift", [])[:50]},
        )

    def _each(self, request, queryset, action, describe):
        for reconciliation in queryset.select_related("table_mapping"):
            try:
                outcome = action(reconciliation=reconciliation, user=request.user)
            except SyncNotStarted as exc:
                self.message_user(request, f"Reconciliation #{reconciliation.pk}: {exc}", messages.ERROR)
                continue
            self.message_user(request, f"Reconciliation #{reconciliation.pk}: {describe(outcome)}", messages.SUCCESS)

    def _ask(self, request, queryset, action: str, confirmation: Confirmation):
        """The confirmation page of a bulk action: it posts the same action on the same selection, confirmed."""
        return render_confirmation(self, request, confirmation, action_hidden_fields(request, action, queryset))

    @admin.action(description="Uncouple the orphan couplings", permissions=["run_sync"])
    def uncouple_orphans(self, request, queryset):
        if not confirmed(request):
            by_mapping: dict = {}
            for reconciliation in queryset.select_related("table_mapping"):
                ids = reconciliation_orphan_couplings(reconciliation)
                by_mapping.setdefault(reconciliation.table_mapping, set()).update(ids)
            counts = {mapping: len(ids) for mapping, ids in by_mapping.items() if ids}
            if counts:
                return self._ask(request, queryset, "uncouple_orphans", uncouple_confirmation(counts))
        self._each(
            request,
            queryset,
            reconciliation_uncouple_orphans,
            lambda job: f"uncoupling the orphans, job #{job.pk}." if job else "no orphan coupling is left.",
        )
        return None

    @admin.action(
        description="Restore or delete the orphans' survivors (the deletion policy)", permissions=["run_sync"]
    )
    def apply_deletion_policy_to_orphans(self, request, queryset):
        if not confirmed(request):
            found = [
                (reconciliation.table_mapping, reconciliation_orphan_survivors(reconciliation))
                for reconciliation in queryset.select_related("table_mapping")
            ]
            confirmation = orphan_survivors_confirmation(found)
            if confirmation.rows:
                return self._ask(request, queryset, "apply_deletion_policy_to_orphans", confirmation)
        self._each(
            request,
            queryset,
            reconciliation_apply_deletion_policy,
            lambda jobs: f"the deletion policy is applied by job(s) {jobs_text(jobs)}." if jobs else "no orphan left.",
        )
        return None

    @admin.action(description="Couple the uncoupled records by their match fields", permissions=["run_sync"])
    def couple_uncoupled_by_match(self, request, queryset):
        if not confirmed(request):
            try:
                confirmation = self._match_confirmation(queryset)
            except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
                self.message_user(
                    request, f"The records could not be read to preview the matches: {exc}", messages.ERROR
                )
                return None
            return self._ask(request, queryset, "couple_uncoupled_by_match", confirmation)
        self._each(
            request, queryset, reconciliation_couple_by_match, lambda job: f"match-based coupling, job #{job.pk}."
        )
        return None

    @staticmethod
    def _match_confirmation(queryset) -> Confirmation:
        """The pairs match-based coupling would make now, read from each mapping's company and Dataverse."""
        mappings = list(dict.fromkeys(r.table_mapping for r in queryset.select_related("table_mapping")))
        rows = []
        for mapping in mappings:
            with connected_clients(mapping) as (bc, dataverse):
                rows += match_coupling_confirmation([mapping], bc, dataverse).rows
        return replace(match_coupling_confirmation([], None, None), rows=rows)

    @admin.action(description="Synchronize the drifted pairs again", permissions=["run_sync"])
    def resynchronize_drift(self, request, queryset):
        if not confirmed(request):
            found = [
                (reconciliation.table_mapping, reconciliation_drifted_records(reconciliation))
                for reconciliation in queryset.select_related("table_mapping")
            ]
            confirmation = drift_confirmation(found)
            if confirmation.rows:
                return self._ask(request, queryset, "resynchronize_drift", confirmation)
        self._each(
            request,
            queryset,
            reconciliation_resync_drift,
            lambda jobs: f"the drifted pairs are synchronized by job(s) {jobs_text(jobs)}.",
        )
        return None
