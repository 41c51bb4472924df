"""The sync side of the table mapping list: last sync, errors and skipped columns linking to the filtered lists, the
sync actions (synchronize, preview, full synchronization), synchronize all, and the full synchronization review.

`TableMappingSyncMixin` goes before `mappings.admin.TableMappingAdmin` in the class `syncadmin/admin.py` registers.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from coupling.models import Coupling
from jobs.admin.confirm import action_hidden_fields, ask_before_sync
from jobs.admin.links import job_links, mapping_couplings_url, mapping_errors_url, mapping_jobs_url
from jobs.choices import JobKind
from jobs.models import SyncError, SyncJob
from jobs.permissions import RunSyncPermissionMixin
from jobs.review import COUPLE_FIRST, FULL_SYNC, full_sync_review
from jobs.services import mappings_in_dependency_order, sync_enqueue_all, sync_enqueue_many


def _enqueue_for_each(modeladmin, request, queryset, *, kind, dry_run=False, label, action=""):
    # Modified records run after the mappings they depend on, as Business Central's full synchronization orders
    # them; all selected mappings go in one RQ job, each dependency once.
    with_dependencies = kind == JobKind.MODIFIED
    mappings = list(queryset)
    if not dry_run:
        # A run writes in bulk: first preview exactly its jobs, show their counts, and run after a confirm, only
        # while that preview still holds (else say why and preview again).
        asking = ask_before_sync(
            modeladmin,
            request,
            mappings,
            kind=kind,
            with_dependencies=with_dependencies,
            label=label,
            hidden=action_hidden_fields(request, action, queryset),
        )
        if asking is not None:
            return asking
    started, refused = sync_enqueue_many(
        mappings=mappings,
        kind=kind,
        user=request.user,
        dry_run=dry_run,
        with_dependencies=with_dependencies,
    )
    for reason in refused.values():
        modeladmin.message_user(request, reason, messages.ERROR)
    if started:
        modeladmin.message_user(
            request, format_html("{} queued: sync jobs {}.", label, job_links(started)), messages.SUCCESS
        )
    return None


@admin.action(description="Synchronize modified records", permissions=["run_sync"])
def synchronize_modified_records(modeladmin, request, queryset):
    return _enqueue_for_each(
        modeladmin,
        request,
        queryset,
        kind=JobKind.MODIFIED,
        label="Synchronization",
        action="synchronize_modified_records",
    )


@admin.action(description="Preview: what would synchronizing modified records change", permissions=["run_sync"])
def preview_modified_records(modeladmin, request, queryset):
    _enqueue_for_each(modeladmin, request, queryset, kind=JobKind.MODIFIED, dry_run=True, label="Preview")


@admin.action(description="Run full synchronization", permissions=["run_sync"])
def run_full_synchronization(modeladmin, request, queryset):
    return _enqueue_for_each(
        modeladmin,
        request,
        queryset,
        kind=JobKind.FULL,
        label="Full synchronization",
        action="run_full_synchronization",
    )


@admin.action(description="Preview: what would a full synchronization change", permissions=["run_sync"])
def preview_full_synchronization(modeladmin, request, queryset):
    _enqueue_for_each(modeladmin, request, queryset, kind=JobKind.FULL, dry_run=True, label="Preview")


def _count_per_mapping(rows):
    """A subquery counting `rows` of the outer table mapping (0 when there are none)."""
    rows = rows.filter(table_mapping=OuterRef("pk")).order_by().values("table_mapping")
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")[:1]), 0)


class TableMappingSyncMixin(RunSyncPermissionMixin):
    """Sync columns, actions and pages for the table mapping admin; `sync_actions` lists the actions it brings."""

    sync_actions = [
        synchronize_modified_records,
        preview_modified_records,
        run_full_synchronization,
        preview_full_synchronization,
    ]
    change_list_template = "admin/jobs/tablemapping_change_list.html"

    def get_queryset(self, request):
        finished = SyncJob.objects.filter(table_mapping=OuterRef("pk"), finished_at__isnull=False)
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_sync=Subquery(finished.order_by("-finished_at").values("finished_at")[:1]),
                error_count=_count_per_mapping(SyncError.objects.open()),
                skipped_count=_count_per_mapping(Coupling.objects.filter(skipped=True)),
            )
        )

    @admin.display(description="last sync", ordering="last_sync")
    def last_sync_display(self, obj):
        if obj.last_sync is None:
            return "-"
        text = date_format(timezone.localtime(obj.last_sync), "DATETIME_FORMAT")  # with its zone, as elsewhere
        return format_html('<a href="{}">{}</a>', mapping_jobs_url(obj.pk), text)

    @admin.display(description="errors", ordering="error_count")
    def errors_display(self, obj):
        return format_html('<a href="{}">{}</a>', mapping_errors_url(obj.pk), obj.error_count)

    @admin.display(description="skipped", ordering="skipped_count")
    def skipped_display(self, obj):
        return format_html('<a href="{}">{}</a>', mapping_couplings_url(obj.pk, skipped="true"), obj.skipped_count)

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
        preview = "preview" in request.POST
        if not preview:
            asking = ask_before_sync(
                self,
                request,
                mappings_in_dependency_order(),
                kind=JobKind.MODIFIED,
                with_dependencies=False,
                label="Synchronize all",
                hidden=[],
            )
            if asking is not None:
                return asking
        jobs = sync_enqueue_all(kind=JobKind.MODIFIED, user=request.user, dry_run=preview)
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
            company = review_company(request.POST.get("company"))
            if not names:
                self.message_user(request, "Check the mappings to synchronize.", messages.WARNING)
                return redirect("admin:mappings_tablemapping_full_sync_review")
            preview = "preview" in request.POST
            if not preview:
                chosen = [
                    m
                    for m in mappings_in_dependency_order()
                    if m.name in names and (company is None or m.company_id == company.pk)
                ]
                hidden = [("mapping", name) for name in names] + ([("company", str(company.pk))] if company else [])
                asking = ask_before_sync(
                    self,
                    request,
                    chosen,
                    kind=JobKind.FULL,
                    with_dependencies=False,
                    label="Full synchronization",
                    hidden=hidden,
                )
                if asking is not None:
                    return asking
            jobs = sync_enqueue_all(kind=JobKind.FULL, user=request.user, names=names, dry_run=preview, company=company)
            what = "Preview of a full synchronization" if preview else "Full synchronization"
            self.message_user(request, f"{what} queued: {len(jobs)} sync job(s), in dependency order.")
            return redirect("admin:jobs_syncjob_changelist")
        if not self.has_view_permission(request):
            raise PermissionDenied
        companies = list(Connection.objects.filter(table_mappings__isnull=False).distinct().order_by("name"))
        company = review_company(request.GET.get("company")) or (companies[0] if companies else None)
        try:
            with (
                open_client(company or Connection.objects.active(ConnectionKind.BUSINESS_CENTRAL)) as bc_client,
                open_client(Connection.objects.active(ConnectionKind.DATAVERSE)) as dataverse_client,
            ):
                lines = full_sync_review(
                    bc_client=bc_client,
                    dataverse_client=dataverse_client,
                    company_id=company.pk if company else None,
                )
            error = ""
        except Exception as exc:  # no connection, or it cannot be reached: say so on the page
            lines, error = [], str(exc)
        context = {
            **self.admin_site.each_context(request),
            "title": "Full synchronization review" + (f": {company.name}" if company else ""),
            "company": company,
            "companies": companies if len(companies) > 1 else [],
            "lines": lines,
            "error": error,
            "can_run_sync": can_run_sync,
            "FULL_SYNC": FULL_SYNC,
            "COUPLE_FIRST": COUPLE_FIRST,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/jobs/full_sync_review.html", context)


def review_company(value: str | None) -> Connection | None:
    """The company (Business Central connection) a review page or form names, if any."""
    if not value or not value.isdigit():
        return None
    return Connection.objects.filter(pk=int(value), kind=ConnectionKind.BUSINESS_CENTRAL).first()
