"""Coupling in the browser: couple by clicking, match-based coupling with its criteria and ambiguous matches,
compare a coupled pair and resolve its conflict field by field, restore or delete after a deletion.

These pages need job services (synchronize after coupling, uncoupling jobs), so they live in `jobs` and register
subclasses of the coupling and table mapping admins in their place (imported at the end of `jobs.admin`).
"""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.forms import modelformset_factory
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from connectors.choices import ConnectionKind
from connectors.clients import open_client
from connectors.models import Connection
from connectors.odata import as_uuid
from connectors.types import ConnectorError
from coupling.models import AmbiguousMatch, Coupling
from coupling.remote_records import BC, DATAVERSE, partner_suggestions, record_get, records_search, side_spec
from coupling.services import (
    CouplingRefused,
    coupling_create,
    coupling_delete_surviving_record,
    coupling_prepare_restore,
    coupling_reserve_new_partner,
    couplings_missing_partners,
)
from jobs.admin import RUN_SYNC_PERMISSION, CouplingSyncAdmin, TableMappingSyncAdmin
from jobs.admin_links import job_link
from jobs.choices import JobKind
from jobs.models import SyncJob
from jobs.resolution.comparison import records_compare
from jobs.resolution.services import ResolutionFailed, conflict_resolve
from jobs.services import SyncNotStarted, coupling_job_enqueue, sync_enqueue, uncoupling_job_enqueue
from mappings.choices import Direction
from mappings.models import FieldMapping, TableMapping

SYNC_CHOICES = [
    ("", "Do not synchronize"),
    (Direction.TO_DATAVERSE, "Synchronize now: Business Central → Dataverse"),
    (Direction.FROM_DATAVERSE, "Synchronize now: Dataverse → Business Central"),
]


@contextmanager
def connected_clients():
    """One client per system for one page; raises with a readable message when a connection is missing."""
    bc = open_client(Connection.objects.active(ConnectionKind.BUSINESS_CENTRAL))
    try:
        dataverse = open_client(Connection.objects.active(ConnectionKind.DATAVERSE))
    except Exception:
        bc.close()
        raise
    try:
        yield bc, dataverse
    finally:
        bc.close()
        dataverse.close()


def _client_for(system, bc, dataverse):
    return bc if system == BC else dataverse


def sync_choices(mapping: TableMapping) -> list[tuple[str, str]]:
    allowed = {"", *([Direction.TO_DATAVERSE] if mapping.syncs_to_dataverse else [])}
    if mapping.syncs_from_dataverse:
        allowed.add(Direction.FROM_DATAVERSE)
    return [choice for choice in SYNC_CHOICES if choice[0] in allowed]


def _enqueue_records_sync(request, mapping: TableMapping, direction: str, coupling: Coupling) -> SyncJob | None:
    source_id = coupling.bc_id if direction == Direction.TO_DATAVERSE else coupling.dataverse_id
    try:
        (job,) = sync_enqueue(
            mapping=mapping, kind=JobKind.RECORDS, direction=direction, record_ids=[source_id], user=request.user
        )
    except SyncNotStarted as exc:
        messages.error(request, str(exc))
        return None
    return job


# -- Coupled records: restore a deleted partner, delete the surviving record, compare and resolve ---------------------


def _missing_partners(modeladmin, request, queryset):
    couplings = list(queryset.select_related("table_mapping"))
    try:
        with connected_clients() as (bc, dataverse):
            return couplings, couplings_missing_partners(couplings=couplings, bc_client=bc, dataverse_client=dataverse)
    except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
        modeladmin.message_user(request, f"Could not check the records: {exc}", messages.ERROR)
        return couplings, None


@admin.action(
    description="Restore the deleted partner (recreate it from the surviving record)", permissions=["run_sync"]
)
def restore_deleted_partners(modeladmin, request, queryset):
    couplings, missing = _missing_partners(modeladmin, request, queryset)
    if missing is None:
        return
    restored = 0
    for coupling in couplings:
        side = missing.get(coupling.pk)
        if side not in (BC, DATAVERSE):
            continue
        coupling_prepare_restore(coupling=coupling, missing_side=side)
        coupling.refresh_from_db()
        direction = Direction.TO_DATAVERSE if side == DATAVERSE else Direction.FROM_DATAVERSE
        if _enqueue_records_sync(request, coupling.table_mapping, direction, coupling):
            restored += 1
    untouched = len(couplings) - restored
    modeladmin.message_user(
        request,
        f"Restoring {restored} deleted record(s) from their partners."
        + (f" {untouched} coupling(s) have both records (or neither) and were left alone." if untouched else ""),
        messages.SUCCESS if restored else messages.WARNING,
    )


@admin.action(description="Delete the surviving record (its partner was deleted)", permissions=["run_sync"])
def delete_surviving_records(modeladmin, request, queryset):
    couplings, missing = _missing_partners(modeladmin, request, queryset)
    if missing is None:
        return
    deleted = 0
    with connected_clients() as (bc, dataverse):
        for coupling in couplings:
            side = missing.get(coupling.pk)
            if side not in (BC, DATAVERSE):
                continue
            surviving = DATAVERSE if side == BC else BC
            try:
                coupling_delete_surviving_record(
                    coupling=coupling, surviving_side=surviving, client=_client_for(surviving, bc, dataverse)
                )
                deleted += 1
            except CouplingRefused as exc:
                modeladmin.message_user(request, str(exc), messages.ERROR)
    untouched = len(couplings) - deleted
    modeladmin.message_user(
        request,
        f"Deleted {deleted} surviving record(s) and their couplings."
        + (f" {untouched} coupling(s) still have both records and were left alone." if untouched else ""),
        messages.SUCCESS if deleted else messages.WARNING,
    )


class CouplingResolveAdmin(CouplingSyncAdmin):
    list_display = ["id", "table_mapping", "bc_record", "dataverse_record", "last_results", "skipped"]
    actions = [*CouplingSyncAdmin.actions, restore_deleted_partners, delete_surviving_records]
    change_list_template = "admin/jobs/coupling/change_list.html"

    def has_add_permission(self, request):
        return False  # records are coupled from a mapping's "Couple records" page, which checks the rules

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
            with connected_clients() as (bc, dataverse):
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
                with connected_clients() as (bc, dataverse):
                    written = conflict_resolve(
                        coupling=coupling, winners=winners, bc_client=bc, dataverse_client=dataverse
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
            job = _enqueue_records_sync(request, coupling.table_mapping, direction, coupling)
            if job:
                messages.success(request, format_html("Synchronizing the record: {}.", job_link(job)))
                return redirect("admin:jobs_syncjob_change", job.pk)
        return redirect(here)


# -- Table mappings: couple by clicking, match-based coupling, links to couplings, errors and jobs ---------------------


class MatchSettingsForm(forms.ModelForm):
    class Meta:
        model = TableMapping
        fields = ["create_new_if_no_match", "sync_after_match_coupling"]


MatchCriteriaFormSet = modelformset_factory(
    FieldMapping, fields=["use_for_matching", "case_sensitive_matching", "match_priority"], extra=0
)


@admin.action(description="Run match-based coupling (with the saved criteria)", permissions=["run_sync"])
def run_match_based_coupling(modeladmin, request, queryset):
    for mapping in queryset:
        job = coupling_job_enqueue(mapping=mapping, user=request.user)
        modeladmin.message_user(
            request, format_html("{}: match-based coupling queued, {}.", mapping.name, job_link(job))
        )


@admin.action(description="Uncouple all records of the selected mappings", permissions=["run_sync"])
def uncouple_all(modeladmin, request, queryset):
    for mapping in queryset:
        job = uncoupling_job_enqueue(mapping=mapping, user=request.user)
        modeladmin.message_user(request, format_html("{}: uncoupling every record, {}.", mapping.name, job_link(job)))


class TableMappingCouplingAdmin(TableMappingSyncAdmin):
    # Right after the name: the list is wide, and these are what an admin looks for next.
    list_display = [TableMappingSyncAdmin.list_display[0], "related_links", *TableMappingSyncAdmin.list_display[1:]]
    actions = [*TableMappingSyncAdmin.actions, run_match_based_coupling, uncouple_all]
    change_form_template = "admin/jobs/tablemapping/change_form.html"

    @admin.display(description="see")
    def related_links(self, obj):
        return format_html(
            '<a href="{}">couplings</a><br><a href="{}">errors</a><br><a href="{}">jobs</a><br><a href="{}">couple</a>',
            reverse("admin:coupling_coupling_changelist") + f"?table_mapping={obj.pk}",
            reverse("admin:jobs_syncerror_changelist") + f"?table_mapping={obj.pk}",
            reverse("admin:jobs_syncjob_changelist") + f"?table_mapping__id__exact={obj.pk}",
            reverse("admin:mappings_tablemapping_couple", args=[obj.pk]),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/couple/", view(self.couple_view), name="mappings_tablemapping_couple"),
            path("<int:pk>/match-coupling/", view(self.match_view), name="mappings_tablemapping_match_coupling"),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, *args, **kwargs):
        obj = context.get("original")
        if obj is not None and obj.pk:
            context["related_urls"] = {
                "couplings": reverse("admin:coupling_coupling_changelist") + f"?table_mapping={obj.pk}",
                "errors": reverse("admin:jobs_syncerror_changelist") + f"?table_mapping={obj.pk}",
                "jobs": reverse("admin:jobs_syncjob_changelist") + f"?table_mapping__id__exact={obj.pk}",
                "couple": reverse("admin:mappings_tablemapping_couple", args=[obj.pk]),
                "match": reverse("admin:mappings_tablemapping_match_coupling", args=[obj.pk]),
            }
        return super().render_change_form(request, context, *args, **kwargs)

    # -- couple by clicking ---------------------------------------------------------------------------------------

    def couple_view(self, request, pk):
        """Business Central records on the left, Dataverse rows on the right: pick one, pick its partner, couple."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        mapping = get_object_or_404(TableMapping, pk=pk)
        if request.method == "POST":
            if not request.user.has_perm(RUN_SYNC_PERMISSION):
                raise PermissionDenied
            return self._couple_post(request, mapping)
        params = {k: request.GET.get(k, "") for k in ("bc_q", "dv_q", "bc", "dv", "outside")}
        context = {
            **self.admin_site.each_context(request),
            "title": f"Couple {mapping.name} records",
            "opts": self.model._meta,
            "mapping": mapping,
            "params": params,
            "bc_spec": side_spec(mapping, BC),
            "dv_spec": side_spec(mapping, DATAVERSE),
            "sync_choices": sync_choices(mapping),
            "error": "",
            "can_run_sync": request.user.has_perm(RUN_SYNC_PERMISSION),
        }
        try:
            with connected_clients() as (bc, dataverse):
                context.update(self._couple_context(mapping, params, bc, dataverse))
        except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
            context["error"] = f"The records could not be read: {exc}"
        return TemplateResponse(request, "admin/jobs/coupling/couple.html", context)

    def _couple_context(self, mapping, params, bc, dataverse) -> dict:
        outside = bool(params["outside"])
        picked = {}
        for system, client in ((BC, bc), (DATAVERSE, dataverse)):
            key = "bc" if system == BC else "dv"
            record_id = as_uuid(params[key].strip())
            picked[system] = record_get(client, mapping, system, record_id) if record_id else None
        bc_records = records_search(bc, mapping, BC, params["bc_q"], include_outside=outside)
        dv_records = records_search(dataverse, mapping, DATAVERSE, params["dv_q"], include_outside=outside)
        suggestions_for, suggestions = None, []
        if picked[BC] and not picked[DATAVERSE] and not picked[BC].outside_filter:
            suggestions_for, suggestions = picked[BC], partner_suggestions(dataverse, mapping, picked[BC])
        elif picked[DATAVERSE] and not picked[BC] and not picked[DATAVERSE].outside_filter:
            suggestions_for, suggestions = picked[DATAVERSE], partner_suggestions(bc, mapping, picked[DATAVERSE])

        def link(**changes):
            return "?" + urlencode({k: v for k, v in {**params, **changes}.items() if v})

        for record in [*bc_records, *dv_records, *suggestions]:
            record.pick_url = link(**{"bc" if record.system == BC else "dv": str(record.id)})
        return {
            "bc_records": bc_records,
            "dv_records": dv_records,
            "picked_bc": picked[BC],
            "picked_dv": picked[DATAVERSE],
            "suggestions_for": suggestions_for,
            "suggestions": suggestions,
            "clear_bc_url": link(bc=""),
            "clear_dv_url": link(dv=""),
        }

    def _couple_post(self, request, mapping: TableMapping):
        back = request.POST.get("next") or reverse("admin:mappings_tablemapping_couple", args=[mapping.pk])
        bc_id, dv_id = as_uuid(request.POST.get("bc", "").strip()), as_uuid(request.POST.get("dv", "").strip())
        direction = request.POST.get("sync", "")
        create_new = "create_new" in request.POST
        try:
            with connected_clients() as (bc, dataverse):
                records = {}
                for system, client, record_id in ((BC, bc, bc_id), (DATAVERSE, dataverse, dv_id)):
                    if record_id is None:
                        continue
                    record = record_get(client, mapping, system, record_id)
                    label = side_spec(mapping, system).label
                    if record is None:
                        raise CouplingRefused(f"The {label} record {record_id} no longer exists.")
                    if record.outside_filter:
                        raise CouplingRefused(
                            f"{record.name or record.id} is outside the {mapping.name} mapping's {label} filter "
                            f"({side_spec(mapping, system).table_filter}): records the mapping does not synchronize "
                            "cannot be coupled. Change the record or the mapping's filter first."
                        )
                    records[system] = record
        except CouplingRefused as exc:
            messages.error(request, str(exc))
            return redirect(back)
        except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
            messages.error(request, f"The records could not be read: {exc}")
            return redirect(back)
        try:
            with transaction.atomic():
                if create_new:
                    return self._create_partner(request, mapping, records, back)
                if BC not in records or DATAVERSE not in records:
                    raise CouplingRefused("Pick a record on each side.")
                coupling = coupling_create(
                    mapping=mapping,
                    bc_id=bc_id,
                    dataverse_id=dv_id,
                    bc_name=records[BC].name,
                    dataverse_name=records[DATAVERSE].name,
                )
                job = None
                if direction in (Direction.TO_DATAVERSE, Direction.FROM_DATAVERSE):
                    job = _enqueue_records_sync(request, mapping, direction, coupling)
        except CouplingRefused as exc:
            messages.error(request, str(exc))
            return redirect(back)
        text = f"Coupled {records[BC].name} with {records[DATAVERSE].name}."
        if job:
            messages.success(request, format_html("{} Synchronizing now: {}.", text, job_link(job)))
            return redirect("admin:jobs_syncjob_change", job.pk)
        messages.success(request, text)
        return redirect(back)

    def _create_partner(self, request, mapping, records, back):
        if len(records) != 1:
            raise CouplingRefused("Pick the one record that needs a new partner.")
        ((system, record),) = records.items()
        direction = Direction.TO_DATAVERSE if system == BC else Direction.FROM_DATAVERSE
        if direction == Direction.TO_DATAVERSE and not mapping.syncs_to_dataverse:
            raise CouplingRefused(f"{mapping.name} does not synchronize to Dataverse: no row can be created there.")
        if direction == Direction.FROM_DATAVERSE and not mapping.syncs_from_dataverse:
            raise CouplingRefused(f"{mapping.name} does not synchronize from Dataverse: no record can be created.")
        coupling = coupling_reserve_new_partner(
            mapping=mapping,
            name=record.name,
            **({"bc_id": record.id} if system == BC else {"dataverse_id": record.id}),
        )
        job = _enqueue_records_sync(request, mapping, direction, coupling)
        if job is None:
            transaction.set_rollback(True)
            return redirect(back)
        other = "Dataverse" if system == BC else "Business Central"
        messages.success(
            request, format_html("Creating a new {} partner for {}: {}.", other, record.name, job_link(job))
        )
        return redirect("admin:jobs_syncjob_change", job.pk)

    # -- match-based coupling ---------------------------------------------------------------------------------------

    def match_view(self, request, pk):
        """Choose the match criteria (kept on the field mappings) and run match-based coupling as a job; couple the
        ambiguous matches of the last run by a click."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        mapping = get_object_or_404(TableMapping, pk=pk)
        criteria_qs = (
            mapping.field_mappings.filter(enabled=True).exclude(bc_field="").exclude(dataverse_field="")
        ).order_by("position", "id")
        if request.method == "POST":
            if not request.user.has_perm(RUN_SYNC_PERMISSION):
                raise PermissionDenied
            settings_form = MatchSettingsForm(request.POST, instance=mapping)
            formset = MatchCriteriaFormSet(request.POST, queryset=criteria_qs)
            if settings_form.is_valid() and formset.is_valid():
                with transaction.atomic():
                    settings_form.save()
                    formset.save()
                    if not any(fm.use_for_matching for fm in criteria_qs.all()):
                        messages.error(request, "Tick at least one field to match on.")
                        return redirect("admin:mappings_tablemapping_match_coupling", mapping.pk)
                    job = coupling_job_enqueue(mapping=mapping, user=request.user)
                self.log_change(request, mapping, "Changed the match-based coupling criteria.")
                messages.success(
                    request, format_html("Match-based coupling of {} queued: {}.", mapping.name, job_link(job))
                )
                return redirect("admin:jobs_syncjob_change", job.pk)
        else:
            settings_form = MatchSettingsForm(instance=mapping)
            formset = MatchCriteriaFormSet(queryset=criteria_qs)
        ambiguous = list(AmbiguousMatch.objects.filter(table_mapping=mapping).order_by("record_name")[:200])
        # A candidate coupled since the list was made cannot be chosen any more: say so instead of offering it.
        candidate_ids = {c["id"] for item in ambiguous for c in item.candidates}
        coupled = Coupling.objects.filter(table_mapping=mapping).filter(
            Q(bc_id__in=candidate_ids) | Q(dataverse_id__in=candidate_ids)
        )
        coupled_candidates = {str(i) for pair in coupled.values_list("bc_id", "dataverse_id") for i in pair if i}
        context = {
            **self.admin_site.each_context(request),
            "title": f"Match-based coupling: {mapping.name}",
            "opts": self.model._meta,
            "mapping": mapping,
            "settings_form": settings_form,
            "formset": formset,
            "ambiguous": ambiguous,
            "coupled_candidates": coupled_candidates & candidate_ids,
            "ambiguous_total": AmbiguousMatch.objects.filter(table_mapping=mapping).count(),
            "couple_url": reverse("admin:mappings_tablemapping_couple", args=[mapping.pk]),
            "here": reverse("admin:mappings_tablemapping_match_coupling", args=[mapping.pk]),
            "can_run_sync": request.user.has_perm(RUN_SYNC_PERMISSION),
        }
        return TemplateResponse(request, "admin/jobs/coupling/match.html", context)


def _register(model, admin_class):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


_register(Coupling, CouplingResolveAdmin)
_register(TableMapping, TableMappingCouplingAdmin)
