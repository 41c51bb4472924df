"""The sync side of the coupling list: synchronize, retry, uncouple, restore or delete the selected couplings' records,
and compare a coupled pair side by side to resolve its conflict field by field.

`CouplingSyncMixin` goes before `coupling.admin.CouplingAdmin` in the class `syncadmin/admin.py` registers.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from connectors.models import Connection
from connectors.types import ConnectorError
from coupling.models import Coupling
from jobs.admin.confirm import action_hidden_fields, confirmed, render_confirmation, uncouple_confirmation
from jobs.admin.coupled_records import (
    connected_clients,
    delete_surviving_records,
    dependency_names,
    enqueue_records_sync,
    restore_deleted_partners,
    sync_choices,
)
from jobs.admin.links import job_link
from jobs.choices import JobKind
from jobs.permissions import RUN_SYNC_PERMISSION, RunSyncPermissionMixin
from jobs.resolution.comparison import records_compare
from jobs.resolution.services import ResolutionFailed, conflict_resolve
from jobs.services import SyncNotStarted, sync_enqueue, uncoupling_job_enqueue
from mappings.choices import BC, DATAVERSE, Direction
from mappings.models import TableMapping


def _after(request) -> str:
    """What the message says when the mappings a record depends on synchronize first."""
    return " after the modified records of the mappings it depends on" if request.POST.get("dependencies") else ""


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
                # The mappings it depends on first, in the same job (as "synchronize modified records"): a record
                # whose salesperson or currency is not coupled yet would fail on that missing dependency.
                jobs = sync_enqueue(
                    mapping=mapping,
                    kind=JobKind.RECORDS,
                    direction=direction,
                    record_ids=ids,
                    user=request.user,
                    with_dependencies=True,
                )
        except SyncNotStarted as exc:
            modeladmin.message_user(request, f"{mapping.name}: {exc}", messages.ERROR)
            continue
        (job,) = [job for job in jobs if job.table_mapping_id == mapping.pk]
        first = dependency_names(mapping)
        modeladmin.message_user(
            request,
            format_html(
                "{}: synchronizing {} record(s){}, {}.",
                mapping.name,
                len(ids),
                f" after the modified records of {first}, which its lookups need" if first else "",
                job_link(job),
            ),
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
    if not confirmed(request):
        counts = {m: len(by_mapping[m.pk]) for m in TableMapping.objects.filter(pk__in=by_mapping)}
        hidden = action_hidden_fields(request, "uncouple_selected", queryset)
        return render_confirmation(modeladmin, request, uncouple_confirmation(counts), hidden)
    for mapping in TableMapping.objects.filter(pk__in=by_mapping):
        job = uncoupling_job_enqueue(mapping=mapping, coupling_ids=by_mapping[mapping.pk], user=request.user)
        modeladmin.message_user(
            request, format_html("{}: uncoupling {}, {}.", mapping.name, len(by_mapping[mapping.pk]), job_link(job))
        )
    return None


class CouplingSyncMixin(RunSyncPermissionMixin):
    """Sync actions and the compare page for the coupling admin; `sync_actions` lists the actions it brings."""

    sync_actions = [
        synchronize_to_dataverse,
        synchronize_from_dataverse,
        retry_skipped,
        uncouple_selected,
        restore_deleted_partners,
        delete_surviving_records,
    ]
    change_list_template = "admin/jobs/coupling/change_list.html"
    change_form_template = "admin/jobs/coupling/change_form.html"

    def has_add_permission(self, request):
        return False  # records are coupled from a mapping's "Couple records" page, which checks the rules

    def render_change_form(self, request, context, *args, **kwargs):
        # The page's Uncouple button runs the list's action on this pair: it asks first, then queues the uncoupling.
        context["can_uncouple"] = self.has_run_sync_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    def _record_link(self, obj, name, record_id):
        url = reverse("admin:coupling_coupling_compare", args=[obj.pk])
        return format_html('<a href="{}" title="Both records side by side">{}</a>', url, name or record_id or "-")

    @admin.display(description="Business Central record", ordering="bc_name")
    def bc_record(self, obj):
        return self._record_link(obj, obj.bc_name, obj.bc_id)

    @admin.display(description="Dataverse row", ordering="dataverse_name")
    def dataverse_record(self, obj):
        return self._record_link(obj, obj.dataverse_name, obj.dataverse_id)

    def get_urls(self):
        return [
            path("<int:pk>/compare/", self.admin_site.admin_view(self.compare_view), name="coupling_coupling_compare"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "mappings": TableMapping.objects.only("pk", "name")}
        return super().changelist_view(request, extra_context)

    def compare_view(self, request, pk):
        """Both records side by side, the fields that differ; pick the winning side per field and apply it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        coupling = get_object_or_404(Coupling.objects.select_related("table_mapping"), pk=pk)
        mapping = coupling.table_mapping
        if request.method == "POST":
            if not request.user.has_perm(RUN_SYNC_PERMISSION):
                raise PermissionDenied
            return self._compare_post(request, coupling)
        comparison, error = None, ""
        try:
            with connected_clients(mapping) as (bc, dataverse):
                comparison = records_compare(
                    mapping=mapping,
                    bc_id=coupling.bc_id,
                    dataverse_id=coupling.dataverse_id,
                    bc_client=bc,
                    dataverse_client=dataverse,
                )
        except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
            error = f"The records could not be read: {exc}"
        context = {
            **self.admin_site.each_context(request),
            "title": f"{mapping.name}: {coupling.bc_name or coupling.bc_id} ↔ "
            f"{coupling.dataverse_name or coupling.dataverse_id}",
            "opts": self.model._meta,
            "coupling": coupling,
            "mapping": mapping,
            "comparison": comparison,
            "error": error,
            "sync_choices": [c for c in sync_choices(mapping) if c[0]],
            "mapping_dependencies": dependency_names(mapping),
            "errors_url": reverse("admin:jobs_syncerror_changelist")
            + "?"
            + urlencode({"text": str(coupling.bc_id or coupling.dataverse_id)}),
            "can_run_sync": request.user.has_perm(RUN_SYNC_PERMISSION),
        }
        return TemplateResponse(request, "admin/jobs/coupling/compare.html", context)

    def _compare_post(self, request, coupling: Coupling):
        here = reverse("admin:coupling_coupling_compare", args=[coupling.pk])
        if "resolve" in request.POST:
            winners = {}
            for key, value in request.POST.items():
                if key.startswith("winner_") and value in (BC, DATAVERSE):
                    winners[int(key.removeprefix("winner_"))] = value
            if not winners:
                messages.warning(request, "Choose the winning side of at least one field.")
                return redirect(here)
            try:
                with connected_clients(coupling.table_mapping) as (bc, dataverse):
                    written = conflict_resolve(
                        coupling=coupling,
                        winners=winners,
                        bc_client=bc,
                        dataverse_client=dataverse,
                        user=request.user,
                    )
            except (ResolutionFailed, ConnectorError) as exc:
                messages.error(request, str(exc))
                return redirect(here)
            messages.success(
                request,
                f"Resolved: wrote {written[DATAVERSE]} field(s) to Dataverse and {written[BC]} to Business Central. "
                "Both records now hold the chosen values; the next run sees no conflict.",
            )
            return redirect(here)
        direction = request.POST.get("sync")
        if direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE):
            Coupling.objects.filter(pk=coupling.pk).unskip(direction)
            job = enqueue_records_sync(request, coupling.table_mapping, direction, coupling)
            if job:
                messages.success(
                    request, format_html("Synchronizing the record{}: {}.", _after(request), job_link(job))
                )
                return redirect("admin:jobs_syncjob_change", job.pk)
        return redirect(here)
