"""The sync error list: filter it, see both records of an error side by side with a plain explanation, and act on
its records (synchronize now, retry, uncouple, retry every error of a class)."""

from __future__ import annotations

from textwrap import shorten
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html

from adminkit.admin import CappedCountAdminMixin
from adminkit.times import admin_time
from connectors.models import Connection
from connectors.types import ConnectorError
from coupling.models import Coupling
from jobs.admin.confirm import (
    action_hidden_fields,
    confirmed,
    render_confirmation,
    retry_confirmation,
    uncouple_confirmation,
)
from jobs.admin.coupled_records import connected_clients, delete_surviving_records, restore_deleted_partners
from jobs.admin.links import job_link, job_links
from jobs.choices import ErrorClass, ErrorState
from jobs.filters import SyncErrorListFilter, sync_error_list
from jobs.models import SyncError
from jobs.permissions import RunSyncPermissionMixin
from jobs.resolution.comparison import records_compare
from jobs.resolution.explanations import EXPLANATIONS
from jobs.resolution.services import sync_errors_resolve, sync_errors_retry
from jobs.services import uncoupling_job_enqueue
from mappings.choices import Direction
from mappings.models import TableMapping


def _report_retry(modeladmin, request, jobs):
    if not jobs:
        modeladmin.message_user(request, "None of these errors names a record to synchronize again.", messages.WARNING)
        return
    modeladmin.message_user(
        request,
        format_html("Synchronizing the records of these errors again: sync jobs {}.", job_links(jobs)),
        messages.SUCCESS,
    )


@admin.action(description="Synchronize now / retry the records of the selected errors", permissions=["run_sync"])
def retry_errors(modeladmin, request, queryset):
    if not confirmed(request):
        hidden = action_hidden_fields(request, "retry_errors", queryset)
        return render_confirmation(modeladmin, request, retry_confirmation(queryset), hidden)
    jobs = sync_errors_retry(errors=queryset, user=request.user)
    _report_retry(modeladmin, request, jobs)


@admin.action(
    description="Retry every error of the selected errors' classes (within the filters)", permissions=["run_sync"]
)
def retry_error_classes(modeladmin, request, queryset):
    classes = set(queryset.values_list("error_class", flat=True).distinct()[:20])
    filters = {k: v for k, v in request.GET.items() if k not in ("error_class", "p", "o", "_changelist_filters")}
    errors = sync_error_list(filters=filters).filter(error_class__in=classes)
    if not confirmed(request):
        hidden = action_hidden_fields(request, "retry_error_classes", queryset)
        return render_confirmation(modeladmin, request, retry_confirmation(errors), hidden)
    jobs = sync_errors_retry(errors=errors, user=request.user)
    _report_retry(modeladmin, request, jobs)


@admin.action(description="Mark the selected errors as resolved (by hand)", permissions=["run_sync"])
def resolve_errors(modeladmin, request, queryset):
    count = sync_errors_resolve(errors=queryset, user=request.user)
    modeladmin.message_user(
        request, f"{count} error(s) resolved by hand; they stay in the history (State: All).", messages.SUCCESS
    )


@admin.action(description="Retry: clear 'skipped' on the couplings of the selected errors", permissions=["run_sync"])
def unskip_error_couplings(modeladmin, request, queryset):
    count = _couplings_of(queryset).filter(skipped=True).unskip()
    modeladmin.message_user(request, f"{count} coupling(s) will be synchronized again on the next run.")


@admin.action(description="Uncouple the records of the selected errors", permissions=["run_sync"])
def uncouple_error_records(modeladmin, request, queryset):
    by_mapping: dict[int, list[int]] = {}
    for pk, mapping_id in _couplings_of(queryset).values_list("pk", "table_mapping_id"):
        by_mapping.setdefault(mapping_id, []).append(pk)
    if not confirmed(request):
        counts = {m: len(by_mapping[m.pk]) for m in TableMapping.objects.filter(pk__in=by_mapping)}
        hidden = action_hidden_fields(request, "uncouple_error_records", queryset)
        return render_confirmation(modeladmin, request, uncouple_confirmation(counts), hidden)
    for mapping in TableMapping.objects.filter(pk__in=by_mapping):
        job = uncoupling_job_enqueue(mapping=mapping, coupling_ids=by_mapping[mapping.pk], user=request.user)
        modeladmin.message_user(
            request, format_html("{}: uncoupling {}, {}.", mapping.name, len(by_mapping[mapping.pk]), job_link(job))
        )


@admin.action(description="Restore the deleted partner of the selected errors' records", permissions=["run_sync"])
def restore_error_partners(modeladmin, request, queryset):
    restore_deleted_partners(modeladmin, request, _couplings_of(queryset))


@admin.action(description="Delete the surviving record of the selected errors' records", permissions=["run_sync"])
def delete_error_surviving_records(modeladmin, request, queryset):
    delete_surviving_records(modeladmin, request, _couplings_of(queryset))


def _couplings_of(errors):
    """The couplings the errors are about (matched by mapping and either record's id)."""
    condition = Q(pk__in=[])
    for mapping_id, bc_id, dataverse_id in errors.values_list("table_mapping_id", "bc_id", "dataverse_id")[:1000]:
        if bc_id:
            condition |= Q(table_mapping_id=mapping_id, bc_id=bc_id)
        if dataverse_id:
            condition |= Q(table_mapping_id=mapping_id, dataverse_id=dataverse_id)
    return Coupling.objects.filter(condition)


class SyncErrorAdmin(CappedCountAdminMixin, RunSyncPermissionMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "table_mapping",
        "direction",
        "error_class",
        "records",
        "short_message",
        "state_display",
        "job_link",
    ]
    list_display_links = ["created_at"]
    list_filter = [SyncErrorListFilter]
    list_select_related = ["table_mapping"]
    search_fields = []
    show_full_result_count = False
    readonly_fields = [f.name for f in SyncError._meta.fields]
    list_per_page = 50
    actions = [
        retry_errors,
        retry_error_classes,
        resolve_errors,
        unskip_error_couplings,
        uncouple_error_records,
        restore_error_partners,
        delete_error_surviving_records,
    ]
    change_form_template = "admin/jobs/syncerror/change_form.html"
    change_list_template = "admin/jobs/syncerror/change_list.html"
    show_facets = admin.ShowFacets.NEVER  # facet counts would COUNT the whole table per choice

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("detail")

    @admin.display(description="records")
    def records(self, obj):
        arrow = "→" if obj.direction == Direction.TO_DATAVERSE else "←"
        return f"{obj.bc_name or obj.bc_id or '-'} {arrow} {obj.dataverse_name or obj.dataverse_id or '-'}"

    @admin.display(description="message")
    def short_message(self, obj):
        return shorten(obj.message, 140, placeholder=" …")  # cut between words

    @admin.display(description="state", ordering="state")
    def state_display(self, obj):
        if obj.state == ErrorState.OPEN:
            return obj.get_state_display()
        when = admin_time(obj.resolved_at)
        by = f" (job #{obj.resolved_by_job_id})" if obj.resolved_by_job_id else ""
        return f"{obj.get_state_display()} {when}{by}"

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj):
        return format_html('<a href="{}">#{}</a>', reverse("admin:jobs_syncjob_change", args=[obj.job_id]), obj.job_id)

    def get_urls(self):
        return [
            path("retry-class/", self.admin_site.admin_view(self.retry_class_view), name="jobs_syncerror_retry_class"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        params = {k: v for k, v in request.GET.items() if k not in ("p", "o")}
        extra_context = {
            **(extra_context or {}),
            "error_classes": ErrorClass.choices,
            "current_filters": urlencode(params),
            "current_class": request.GET.get("error_class", ""),
            "can_run_sync": self.has_run_sync_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def retry_class_view(self, request):
        """Synchronize again the records of every error of one class, within the list's current filters (POST)."""
        if request.method != "POST" or not self.has_run_sync_permission(request):
            raise PermissionDenied
        filters = {k: v for k, v in request.GET.items() if k not in ("p", "o")}
        filters["error_class"] = request.POST.get("error_class", "")
        if filters["error_class"] not in ErrorClass.values:
            messages.error(request, "Choose an error class to retry.")
        elif not confirmed(request):
            confirmation = retry_confirmation(sync_error_list(filters=filters))
            return render_confirmation(self, request, confirmation, [("error_class", filters["error_class"])])
        else:
            jobs = sync_errors_retry(errors=sync_error_list(filters=filters), user=request.user)
            _report_retry(self, request, jobs)
        return redirect(reverse("admin:jobs_syncerror_changelist") + "?" + urlencode(filters))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The error with both records side by side, the differing values, what it means and what to do."""
        if request.method != "GET" or not self.has_view_permission(request):
            # Refused (or read-only) by the admin before anything is read from either system.
            return super().change_view(request, object_id, form_url, extra_context)
        error = self.get_object(request, object_id)
        extra = {**(extra_context or {})}
        if error is not None:
            explanation, advice = EXPLANATIONS.get(error.error_class, EXPLANATIONS[ErrorClass.INTERNAL])
            coupling = _couplings_of(SyncError.objects.filter(pk=error.pk)).first()
            extra.update(explanation=explanation, advice=advice, coupling=coupling, error_obj=error)
            if error.error_class == ErrorClass.AMBIGUOUS_MATCH:
                # It has no partner to compare with yet; its candidates are on the mapping's match page.
                return super().change_view(request, object_id, form_url, extra)
            try:
                with connected_clients(error.table_mapping) as (bc, dataverse):
                    extra["comparison"] = records_compare(
                        mapping=error.table_mapping,
                        bc_id=error.bc_id,
                        dataverse_id=error.dataverse_id,
                        bc_client=bc,
                        dataverse_client=dataverse,
                    )
            except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
                extra["read_error"] = f"The records could not be read: {exc}"
        return super().change_view(request, object_id, form_url, extra)
