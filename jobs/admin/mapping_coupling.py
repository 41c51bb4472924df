"""Coupling pages of a table mapping: couple by clicking (or create a new partner), match-based coupling with its
criteria and ambiguous matches, links to the mapping's couplings, errors and jobs, and the coupling actions.

`TableMappingCouplingMixin` goes before `mappings.admin.TableMappingAdmin`, and `AmbiguousMatchCouplingMixin` before
`coupling.admin.AmbiguousMatchAdmin`, in the classes `syncadmin/admin.py` registers.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.forms import BaseModelFormSet, modelformset_factory
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from connectors.models import Connection
from connectors.odata import as_uuid
from connectors.types import ConnectorError
from coupling.models import AmbiguousMatch, Coupling
from coupling.remote_records import partner_suggestions, record_get, records_search, side_spec
from coupling.services import CouplingRefused, coupling_create, coupling_reserve_new_partner
from jobs.admin.confirm import (
    CONFIRM_FIELD,
    action_hidden_fields,
    confirmed,
    match_coupling_confirmation,
    render_confirmation,
    uncouple_confirmation,
)
from jobs.admin.coupled_records import connected_clients, dependency_names, enqueue_records_sync, sync_choices
from jobs.admin.links import job_link, mapping_couplings_url, mapping_errors_url, mapping_jobs_url
from jobs.permissions import RUN_SYNC_PERMISSION, RunSyncPermissionMixin
from jobs.services import coupling_job_enqueue, uncoupling_job_enqueue
from mappings.choices import BC, DATAVERSE, Direction
from mappings.models import FieldMapping, TableMapping


class MatchSettingsForm(forms.ModelForm):
    class Meta:
        model = TableMapping
        fields = ["create_new_if_no_match", "sync_after_match_coupling"]


class BaseMatchCriteriaFormSet(BaseModelFormSet):
    """The match criteria of a mapping's field mappings; a run needs at least one ticked, checked before saving."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        if not any(form.cleaned_data.get("use_for_matching") for form in self.forms):
            raise ValidationError("Tick at least one field to match on.")


MatchCriteriaFormSet = modelformset_factory(
    FieldMapping,
    formset=BaseMatchCriteriaFormSet,
    fields=["use_for_matching", "case_sensitive_matching", "match_priority"],
    extra=0,
)


@admin.action(description="Run match-based coupling (with the saved criteria)", permissions=["run_sync"])
def run_match_based_coupling(modeladmin, request, queryset):
    if not confirmed(request):
        try:
            with connected_clients() as (bc, dataverse):
                confirmation = match_coupling_confirmation(list(queryset), bc, dataverse)
        except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
            modeladmin.message_user(
                request, f"The records could not be read to preview the matches: {exc}", messages.ERROR
            )
            return None
        hidden = action_hidden_fields(request, "run_match_based_coupling", queryset)
        return render_confirmation(modeladmin, request, confirmation, hidden)
    for mapping in queryset:
        job = coupling_job_enqueue(mapping=mapping, user=request.user)
        modeladmin.message_user(
            request, format_html("{}: match-based coupling queued, {}.", mapping.name, job_link(job))
        )


@admin.action(description="Uncouple all records of the selected mappings", permissions=["run_sync"])
def uncouple_all(modeladmin, request, queryset):
    if not confirmed(request):
        counts = {mapping: Coupling.objects.filter(table_mapping=mapping).count() for mapping in queryset}
        hidden = action_hidden_fields(request, "uncouple_all", queryset)
        return render_confirmation(modeladmin, request, uncouple_confirmation(counts), hidden)
    for mapping in queryset:
        job = uncoupling_job_enqueue(mapping=mapping, user=request.user)
        modeladmin.message_user(request, format_html("{}: uncoupling every record, {}.", mapping.name, job_link(job)))


class TableMappingCouplingMixin(RunSyncPermissionMixin):
    """Coupling pages, links and actions for the table mapping admin; `coupling_actions` lists the actions it brings."""

    coupling_actions = [run_match_based_coupling, uncouple_all]
    change_form_template = "admin/jobs/tablemapping/change_form.html"

    @admin.display(description="see")
    def related_links(self, obj):
        return format_html(
            '<a href="{}">couplings</a><br><a href="{}">errors</a><br><a href="{}">jobs</a><br><a href="{}">couple</a>',
            mapping_couplings_url(obj.pk),
            mapping_errors_url(obj.pk),
            mapping_jobs_url(obj.pk),
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
                "couplings": mapping_couplings_url(obj.pk),
                "errors": mapping_errors_url(obj.pk),
                "jobs": mapping_jobs_url(obj.pk),
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
            "mapping_dependencies": dependency_names(mapping),
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
                    job = enqueue_records_sync(request, mapping, direction, coupling)
        except CouplingRefused as exc:
            messages.error(request, str(exc))
            return redirect(back)
        text = f"Coupled {records[BC].name} with {records[DATAVERSE].name}."
        if job:
            after = (
                " after the modified records of the mappings it depends on" if request.POST.get("dependencies") else ""
            )
            messages.success(request, format_html("{} Synchronizing now{}: {}.", text, after, job_link(job)))
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
        job = enqueue_records_sync(request, mapping, direction, coupling)
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
                if not confirmed(request):
                    return self._confirm_match(request, mapping, settings_form, formset)
                with transaction.atomic():
                    settings_form.save()
                    formset.save()
                    job = coupling_job_enqueue(mapping=mapping, user=request.user)
                self.log_change(request, mapping, "Changed the match-based coupling criteria.")
                messages.success(
                    request, format_html("Match-based coupling of {} queued: {}.", mapping.name, job_link(job))
                )
                return redirect("admin:jobs_syncjob_change", job.pk)
            if formset.non_form_errors():  # refused before anything was saved
                for error in formset.non_form_errors():
                    messages.error(request, error)
                return redirect("admin:mappings_tablemapping_match_coupling", mapping.pk)
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

    def _confirm_match(self, request, mapping, settings_form, formset):
        """What match-based coupling with the posted criteria would couple now; the criteria are saved (and the run
        queued) only when the page's Yes posts them again, confirmed."""
        try:
            with transaction.atomic():
                settings_form.save()
                formset.save()
                with connected_clients() as (bc, dataverse):
                    confirmation = match_coupling_confirmation([mapping], bc, dataverse)
                transaction.set_rollback(True)  # a preview: the criteria stay as they were until confirmed
        except (ConnectorError, Connection.DoesNotExist, Connection.MultipleObjectsReturned) as exc:
            messages.error(request, f"The records could not be read to preview the matches: {exc}")
            return redirect("admin:mappings_tablemapping_match_coupling", mapping.pk)
        mapping.refresh_from_db()
        posted = [
            (name, value)
            for name, values in request.POST.lists()
            if name not in ("csrfmiddlewaretoken", CONFIRM_FIELD)
            for value in values
        ]
        return render_confirmation(self, request, confirmation, posted)


class AmbiguousMatchCouplingMixin:
    """The candidates of an ambiguous match link to the mapping's match page, where one is coupled by a click."""

    @admin.display(description="candidates")
    def candidate_list(self, obj):
        url = reverse("admin:mappings_tablemapping_match_coupling", args=[obj.table_mapping_id])
        return format_html('{} (<a href="{}#record-{}">couple one</a>)', self.candidate_names(obj), url, obj.record_id)
