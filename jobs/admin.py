"""Admin for sync jobs and errors, and the sync actions on table mappings.

The table mapping admin itself lives in `mappings.admin`; mappings may not import jobs, so the sync actions are
added here, by registering a subclass in its place.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from coupling.admin import CouplingAdmin
from coupling.models import Coupling
from jobs.admin_links import job_link, job_links
from jobs.choices import ACTIVE_STATUSES, JobKind
from jobs.models import SyncError, SyncJob
from jobs.permissions import RUN_SYNC_PERMISSION, RunSyncPermissionMixin  # noqa: F401 (re-exported)
from jobs.review import COUPLE_FIRST, FULL_SYNC, full_sync_review
from jobs.services import (
    SyncNotStarted,
    sync_enqueue,
    sync_enqueue_all,
    sync_job_cancel,
    uncoupling_job_enqueue,
)
from mappings.admin import TableMappingAdmin
from mappings.choices import Direction
from mappings.models import TableMapping


def _enqueue_for_each(modeladmin, request, queryset, *, kind, dry_run=False, label):
    started = []
    for mapping in queryset:
        try:
            jobs = sync_enqueue(
                mapping=mapping,
                kind=kind,
                user=request.user,
                dry_run=dry_run,
                with_dependencies=kind == JobKind.MODIFIED,
            )
        except SyncNotStarted as exc:
            modeladmin.message_user(request, str(exc), messages.ERROR)
            continue
        started.extend(jobs)
    if started:
        modeladmin.message_user(
            request, format_html("{} queued: sync jobs {}.", label, job_links(started)), messages.SUCCESS
        )


@admin.action(description="Synchronize modified records", permissions=["run_sync"])
def synchronize_modified_records(modeladmin, request, queryset):
    _enqueue_for_each(modeladmin, request, queryset, kind=JobKind.MODIFIED, label="Synchronization")


@admin.action(description="Preview: what would synchronizing modified records change", permissions=["run_sync"])
def preview_modified_records(modeladmin, request, queryset):
    _enqueue_for_each(modeladmin, request, queryset, kind=JobKind.MODIFIED, dry_run=True, label="Preview")


@admin.action(description="Run full synchronization", permissions=["run_sync"])
def run_full_synchronization(modeladmin, request, queryset):
    _enqueue_for_each(modeladmin, request, queryset, kind=JobKind.FULL, label="Full synchronization")


@admin.action(description="Preview: what would a full synchronization change", permissions=["run_sync"])
def preview_full_synchronization(modeladmin, request, queryset):
    _enqueue_for_each(modeladmin, request, queryset, kind=JobKind.FULL, dry_run=True, label="Preview")


class TableMappingSyncAdmin(RunSyncPermissionMixin, TableMappingAdmin):
    actions = [
        *TableMappingAdmin.actions,
        synchronize_modified_records,
        preview_modified_records,
        run_full_synchronization,
        preview_full_synchronization,
    ]
    change_list_template = "admin/jobs/tablemapping_change_list.html"

    def get_urls(self):
        return [
            path(
                "full-sync-review/",
                self.admin_site.admin_view(self.full_sync_review_view),
                name="mappings_tablemapping_full_sync_review",
            ),
            path(
                "sync-all/",
                self.admin_site.admin_view(self.sync_all_view),
                name="mappings_tablemapping_sync_all",
            ),
            *super().get_urls(),
        ]

    def sync_all_view(self, request):
        """Synchronize modified records of all mappings, in dependency order (POST only)."""
        if request.method != "POST" or not self.has_run_sync_permission(request):
            raise PermissionDenied
        jobs = sync_enqueue_all(kind=JobKind.MODIFIED, user=request.user, dry_run="preview" in request.POST)
        self.message_user(
            request, format_html("Queued for all mappings, in dependency order: {}.", job_links(jobs)), messages.SUCCESS
        )
        return redirect("admin:jobs_syncjob_changelist")

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_run_sync": self.has_run_sync_permission(request)}
        return super().changelist_view(request, extra_context)

    def full_sync_review_view(self, request):
        """What a full synchronization of each mapping would do; run or preview the checked ones (POST).

        Anyone who may see the mappings may read the review; running or previewing needs the run-sync permission.
        """
        can_run_sync = self.has_run_sync_permission(request)
        if request.method == "POST":
            if not can_run_sync:
                raise PermissionDenied
            names = request.POST.getlist("mapping")
            if not names:
                self.message_user(request, "Check the mappings to synchronize.", messages.WARNING)
                return redirect("admin:mappings_tablemapping_full_sync_review")
            preview = "preview" in request.POST
            jobs = sync_enqueue_all(kind=JobKind.FULL, user=request.user, names=names, dry_run=preview)
            what = "Preview of a full synchronization" if preview else "Full synchronization"
            self.message_user(request, f"{what} queued: {len(jobs)} sync job(s), in dependency order.")
            return redirect("admin:jobs_syncjob_changelist")
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            with (
                open_client(Connection.objects.active(ConnectionKind.BUSINESS_CENTRAL)) as bc_client,
                open_client(Connection.objects.active(ConnectionKind.DATAVERSE)) as dataverse_client,
            ):
                lines = full_sync_review(bc_client=bc_client, dataverse_client=dataverse_client)
            error = ""
        except Exception as exc:  # no connection, or it cannot be reached: say so on the page
            lines, error = [], str(exc)
        context = {
            **self.admin_site.each_context(request),
            "title": "Full synchronization review",
            "lines": lines,
            "error": error,
            "can_run_sync": can_run_sync,
            "FULL_SYNC": FULL_SYNC,
            "COUPLE_FIRST": COUPLE_FIRST,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/jobs/full_sync_review.html", context)


if admin.site.is_registered(TableMapping):
    admin.site.unregister(TableMapping)
admin.site.register(TableMapping, TableMappingSyncAdmin)


@admin.register(SyncJob)
class SyncJobAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "table_mapping",
        "kind",
        "direction",
        "status_badge",
        "queued_at",
        "finished_at",
        "inserted",
        "modified",
        "unchanged",
        "skipped",
        "failed",
        "coupled",
        "uncoupled",
        "http_requests",
    ]
    list_filter = ["status", "kind", "direction", "table_mapping", "dry_run"]
    list_select_related = ["table_mapping"]
    show_full_result_count = False
    date_hierarchy = "queued_at"
    readonly_fields = [f.name for f in SyncJob._meta.fields] + ["live_progress", "requests_by_kind"]
    # Status, counts, errors link, message and a preview's sample live in the progress box, which refreshes while
    # the job runs; the fields below do not change once the job has started.
    fieldsets = [
        (None, {"fields": ["live_progress"]}),
        ("Run", {"fields": ["kind", "table_mapping", "direction", "dry_run", "requested_by", "rq_job_id"]}),
        ("Details", {"fields": ["queued_at", "started_at", "finished_at", "requests_by_kind"]}),
    ]
    actions = ["cancel_jobs"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return obj.get_status_display() + (" (preview)" if obj.dry_run else "")

    @admin.display(description="HTTP requests")
    def requests_by_kind(self, obj):
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted((obj.http_requests_by_kind or {}).items()))
        return f"{obj.http_requests}" + (f" ({kinds})" if kinds else "")

    @admin.display(description="progress")
    def live_progress(self, obj):
        return render_to_string("admin/jobs/syncjob/progress.html", {"job": obj})

    @admin.action(description="Cancel selected jobs", permissions=["run_sync"])
    def cancel_jobs(self, request, queryset):
        jobs = list(queryset.filter(status__in=ACTIVE_STATUSES))
        for job in jobs:
            sync_job_cancel(job=job)
        self.message_user(request, f"Asked {len(jobs)} job(s) to stop.", messages.SUCCESS)

    def get_urls(self):
        return [
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="jobs_syncjob_progress",
            ),
            *super().get_urls(),
        ]

    def progress_view(self, request, pk):
        """The small fragment the job page polls while the job runs."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        job = get_object_or_404(SyncJob, pk=pk)
        return HttpResponse(render_to_string("admin/jobs/syncjob/progress.html", {"job": job}))


@admin.register(SyncError)
class SyncErrorAdmin(RunSyncPermissionMixin, admin.ModelAdmin):
    list_display = ["created_at", "table_mapping", "direction", "error_class", "bc_name", "dataverse_name", "message"]
    list_filter = ["error_class", "direction", "table_mapping"]
    list_select_related = ["table_mapping"]
    search_fields = ["message", "bc_name", "dataverse_name", "=bc_id", "=dataverse_id"]
    show_full_result_count = False
    readonly_fields = [f.name for f in SyncError._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _sync_selected(modeladmin, request, queryset, direction):
    by_mapping = {}
    for coupling in queryset.select_related("table_mapping"):
        by_mapping.setdefault(coupling.table_mapping, []).append(coupling)
    for mapping, couplings in by_mapping.items():
        source_attr = "bc_id" if direction == Direction.TO_DATAVERSE else "dataverse_id"
        ids = [getattr(c, source_attr) for c in couplings if getattr(c, source_attr)]
        try:
            with transaction.atomic():  # un-skip before the worker can pick the job up
                Coupling.objects.filter(pk__in=[c.pk for c in couplings]).unskip(direction)
                jobs = sync_enqueue(
                    mapping=mapping, kind=JobKind.RECORDS, direction=direction, record_ids=ids, user=request.user
                )
        except SyncNotStarted as exc:
            modeladmin.message_user(request, f"{mapping.name}: {exc}", messages.ERROR)
            continue
        modeladmin.message_user(
            request, format_html("{}: synchronizing {} record(s), {}.", mapping.name, len(ids), job_link(jobs[0]))
        )


@admin.action(description="Synchronize now: Business Central → Dataverse", permissions=["run_sync"])
def synchronize_to_dataverse(modeladmin, request, queryset):
    _sync_selected(modeladmin, request, queryset, Direction.TO_DATAVERSE)


@admin.action(description="Synchronize now: Dataverse → Business Central", permissions=["run_sync"])
def synchronize_from_dataverse(modeladmin, request, queryset):
    _sync_selected(modeladmin, request, queryset, Direction.FROM_DATAVERSE)


@admin.action(description="Retry: clear 'skipped' so the next run synchronizes them", permissions=["run_sync"])
def retry_skipped(modeladmin, request, queryset):
    count = queryset.filter(skipped=True).unskip()
    modeladmin.message_user(request, f"{count} coupling(s) will be synchronized on the next run.")


@admin.action(description="Uncouple selected records", permissions=["run_sync"])
def uncouple_selected(modeladmin, request, queryset):
    by_mapping = {}
    for pk, mapping_id in queryset.values_list("pk", "table_mapping_id"):
        by_mapping.setdefault(mapping_id, []).append(pk)
    for mapping in TableMapping.objects.filter(pk__in=by_mapping):
        job = uncoupling_job_enqueue(mapping=mapping, coupling_ids=by_mapping[mapping.pk], user=request.user)
        modeladmin.message_user(
            request, format_html("{}: uncoupling {}, {}.", mapping.name, len(by_mapping[mapping.pk]), job_link(job))
        )


class CouplingSyncAdmin(RunSyncPermissionMixin, CouplingAdmin):
    actions = [
        *CouplingAdmin.actions,
        synchronize_to_dataverse,
        synchronize_from_dataverse,
        retry_skipped,
        uncouple_selected,
    ]


if admin.site.is_registered(Coupling):
    admin.site.unregister(Coupling)
admin.site.register(Coupling, CouplingSyncAdmin)


# Schedules and webhook subscriptions; coupling pages; the error list and conflict resolution.
from jobs import admin_coupling, admin_errors, admin_schedules  # noqa: E402,F401
