"""Mapping editing in the admin: the table mapping admin (with its field mappings inline, metadata suggestions and
warnings; reset, export, import, test filter and transformation preview pages) and the record of configuration
changes.

These classes register nothing: `syncadmin/admin.py` registers each model once, adding the sync columns, actions and
pages of `jobs` through its mixins.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms.utils import ErrorDict
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from connectors.choices import ConnectionKind
from connectors.models import Connection
from mappings.choices import SIDE_LABEL
from mappings.companies import CompanyRequired
from mappings.defaults import DEFAULT_NAMES
from mappings.forms import (
    FieldMappingForm,
    FieldMappingFormSet,
    ImportForm,
    NewRecordTemplateForm,
    NewRecordTemplateFormSet,
    TableMappingForm,
    TestFilterForm,
    TransformationPreviewForm,
    mapping_label,
    validation_run,
)
from mappings.importing import ImportRefused
from mappings.metadata import MetadataCache, MetadataUnavailable, column_hint
from mappings.models import FieldMapping, NewRecordTemplate, TableMapping
from mappings.services import configuration_export, configuration_import, table_mapping_reset_to_defaults
from mappings.transformations import TransformationError, apply_transformation
from mappings.validation import check_filter

# "Show their fields" posts the whole form under this name: the page comes back with the tables' fields offered and
# every value as typed (company, filters, field rows), saved or not. A link reloading the page lost them.
SHOW_FIELDS = "_show_fields"


def showing_fields(request) -> bool:
    return request.method == "POST" and SHOW_FIELDS in request.POST


def _never_valid(form) -> bool:
    return False


def _hide_errors(context: dict) -> None:
    """Forget the errors of a form posted only to show the tables' fields: required fields may still be empty."""
    context["errors"] = []
    context["adminform"].form._errors = ErrorDict()
    for inline in context.get("inline_admin_formsets", []):
        formset = inline.formset
        formset._non_form_errors = formset.error_class()
        formset._errors = [ErrorDict() for _ in formset.forms]
        for form in formset.forms:
            form._errors = ErrorDict()


DEFAULT_MARKER_TITLE = "One of the default mappings: 'Use default synchronization settings' can put it back"


class FieldMappingInline(admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    formset = FieldMappingFormSet
    fk_name = "table_mapping"
    extra = 1
    autocomplete_fields = ()
    fields = [
        "position",
        "bc_field",
        "dataverse_field",
        "direction",
        "constant_value",
        "enabled",
        "transformation",
        "value_map",
        "lookup_mapping",
        "clear_value_on_failed_lookup",
        "add_missing_options",
        "bc_code_table",
        "not_null",
        "update_conflict_resolution",
        "use_for_matching",
        "case_sensitive_matching",
        "match_priority",
    ]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "lookup_mapping":
            # A plain select: the add/change/delete icons around it would open another mapping mid-edit.
            field = db_field.formfield(
                queryset=TableMapping.objects.select_related("company").order_by("name"),
            )
            field.label_from_instance = mapping_label
            return field
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        if obj is not None and obj.pk:
            formset.form = _lookups_of_company(formset.form, obj.company_id)
        return type(formset.__name__, (formset,), {"validation_run": validation_run(request)})


def _lookups_of_company(form_class, company_id):
    """The lookup select of a saved mapping offers its own company's mappings by name alone: a lookup goes through
    a mapping of the same company (the formset refuses another's), and "SALESPEOPLE (Sandbox Business Central)" in
    every row was cut to "SALESPEOI" in the 1,366 px grid."""

    class LookupsOfCompany(form_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            field = self.fields["lookup_mapping"]
            # Only the offered choices narrow: the field still accepts any mapping, so the formset can say why
            # another company's is refused rather than "Select a valid choice".
            field.choices = [("", field.empty_label)] + [
                (mapping.pk, mapping.name) for mapping in field.queryset.filter(company_id=company_id)
            ]

    LookupsOfCompany.__name__ = form_class.__name__
    return LookupsOfCompany


class NewRecordTemplateInline(admin.TabularInline):
    """Values for new records chosen by a filter on the source record: the first match, in position order."""

    model = NewRecordTemplate
    form = NewRecordTemplateForm
    formset = NewRecordTemplateFormSet
    fk_name = "table_mapping"
    extra = 0
    fields = ["position", "name", "target", "source_filter", "values"]

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        return type(formset.__name__, (formset,), {"validation_run": validation_run(request)})


class TableMappingAdmin(admin.ModelAdmin):
    form = TableMappingForm
    inlines = [FieldMappingInline, NewRecordTemplateInline]
    list_display = ["name_display", "tables_display", "filters_display", "only_coupled", "dependency_names"]
    list_filter = ["company", "direction", "is_default", "sync_only_coupled", "multi_company"]
    list_select_related = ["company"]
    search_fields = ["name", "bc_entity_set", "dataverse_entity_set"]
    filter_horizontal = ["dependencies"]
    readonly_fields = ["bc_watermark", "dataverse_watermark", "is_default", "created_at", "updated_at"]
    actions = ["reset_to_defaults"]
    change_form_template = "admin/mappings/tablemapping/change_form.html"
    change_list_template = "admin/mappings/tablemapping/change_list.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("name", "company"),
                    ("bc_entity_set", "dataverse_entity_set"),
                    "direction",
                    "table_filter",
                    "integration_table_filter",
                    "record_priority",
                    "sync_only_coupled",
                    "dependencies",
                ]
            },
        ),
        ("Companies", {"fields": ["dataverse_company_field", "multi_company"]}),
        (
            "Conflicts and failures",
            {"fields": ["update_conflict_resolution", "deletion_conflict_resolution", "skip_after_failures"]},
        ),
        (
            "Deletions",
            {"fields": [("deletions_to_dataverse", "deletions_from_dataverse"), "deletion_safety_percent"]},
        ),
        (
            "Records and names",
            {"fields": ["dataverse_primary_key", ("bc_name_field", "dataverse_name_field")]},
        ),
        ("Values for new records", {"fields": ["bc_new_record_values", "dataverse_new_record_values"]}),
        ("Match-based coupling", {"fields": ["sync_after_match_coupling", "create_new_if_no_match"]}),
        (
            "Status",
            {"fields": ["is_default", ("bc_watermark", "dataverse_watermark"), ("created_at", "updated_at")]},
        ),
    ]

    # ----------------------------------------------------------------------------------------------------------
    # List columns
    # ----------------------------------------------------------------------------------------------------------

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("dependencies")

    # Name, company and "default" share a cell, and "synchronize only coupled records" has a short header: as
    # columns of their own they pushed last sync, errors and skipped past the right edge of a 1,366 px screen.
    @admin.display(description="name / company", ordering="name")
    def name_display(self, obj):
        default = (
            format_html(' <small class="default-marker" title="{}">default</small>', DEFAULT_MARKER_TITLE)
            if obj.is_default
            else ""
        )
        return format_html(
            '<span class="mapping-name">{}</span>{}<br><small>{}</small>', obj.name, default, obj.company or ""
        )

    @admin.display(description="only coupled", boolean=True, ordering="sync_only_coupled")
    def only_coupled(self, obj):
        return obj.sync_only_coupled

    @admin.display(description="tables", ordering="bc_entity_set")
    def tables_display(self, obj):
        """Both tables and the direction in one cell: three columns of single words took a fifth of the list."""
        arrow = {"to_dataverse": "→", "from_dataverse": "←"}.get(obj.direction, "⇄")
        return format_html(
            '{} <span title="{}">{}</span> {}',
            obj.bc_entity_set,
            obj.get_direction_display(),
            arrow,
            obj.dataverse_entity_set,
        )

    @admin.display(description="filters")
    def filters_display(self, obj):
        """The Business Central and the Dataverse filter in one cell, each named."""
        named = [("Business Central", obj.table_filter), ("Dataverse", obj.integration_table_filter)]
        rows = [(label, text) for label, text in named if text]
        return format_html_join("", "<div><small>{}:</small> <code>{}</code></div>", rows) if rows else "-"

    @admin.display(description="dependencies")
    def dependency_names(self, obj):
        return ", ".join(sorted(dep.name for dep in obj.dependencies.all())) or "-"

    # ----------------------------------------------------------------------------------------------------------
    # Change form: validation with metadata, suggestions, warnings
    # ----------------------------------------------------------------------------------------------------------

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        attrs = {"validation_run": validation_run(request)}
        if showing_fields(request):
            attrs["is_valid"] = _never_valid  # the form comes back as typed; nothing is saved
        return type(form.__name__, (form,), attrs)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        run = validation_run(request)
        try:
            # Only for those who may open the form: a refused user must not make us read both systems' metadata.
            may_open = self.has_view_or_change_permission(request) if object_id else self.has_add_permission(request)
            suggestions = self._suggestions(request, object_id) if may_open else {}
            extra_context = {**(extra_context or {}), **suggestions}
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if showing_fields(request) and isinstance(response, TemplateResponse):
                _hide_errors(response.context_data)  # a half-filled form is no mistake yet
            else:
                for warning in run.warnings:
                    messages.warning(request, warning)
            return response
        finally:
            run.metadata.close()

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "dependencies":
            kwargs["queryset"] = TableMapping.objects.select_related("company").order_by("name", "company__name")
            field = super().formfield_for_manytomany(db_field, request, **kwargs)
            field.label_from_instance = mapping_label
            return field
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _suggestions(self, request, object_id) -> dict:
        """Field and table names from both systems' metadata, for the form's datalists."""
        run = validation_run(request)
        mapping = TableMapping.objects.filter(pk=object_id).first() if object_id else None
        lists = {}
        typed = request.POST if showing_fields(request) else request.GET
        if request.method == "GET" or showing_fields(request):
            for side in ("bc", "dataverse"):
                try:
                    lists[f"{side}-tables"] = [(name, "") for name in run.metadata.tables(side)]
                except MetadataUnavailable as exc:
                    messages.warning(request, exc.message)
                    lists[f"{side}-tables"] = []
                # The tables typed in the form ("Show their fields" posts the form), else the saved ones.
                entity_set = typed.get(f"{side}_entity_set") or (
                    getattr(mapping, f"{side}_entity_set", "") if mapping else ""
                )
                lists[f"{side}-fields"] = []
                if entity_set:
                    try:
                        table = run.metadata.table(side, entity_set)
                    except MetadataUnavailable as exc:
                        if exc.unknown_table:
                            messages.warning(request, exc.message)
                        continue
                    lists[f"{side}-fields"] = [(c.name, column_hint(c)) for c in table.columns.values()]
        return {"mapping_datalists": lists}

    # ----------------------------------------------------------------------------------------------------------
    # Pages: reset, export, import, test filter, transformation preview
    # ----------------------------------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("reset-defaults/", view(self.reset_view), name="mappings_tablemapping_reset"),
            path("export/", view(self.export_view), name="mappings_tablemapping_export"),
            path("import/", view(self.import_view), name="mappings_tablemapping_import"),
            path(
                "transformation-preview/",
                view(self.transformation_preview_view),
                name="mappings_tablemapping_transformation_preview",
            ),
            path("<int:object_id>/test-filter/", view(self.test_filter_view), name="mappings_tablemapping_test_filter"),
            *super().get_urls(),
        ]

    def _page(self, request, template: str, title: str, **context) -> TemplateResponse:
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title, **context}
        return TemplateResponse(request, f"admin/mappings/tablemapping/{template}", context)

    def changelist_view(self, request, extra_context=None):
        # The list's tools: only those the user may use (the pages below check the same permissions).
        can_change = self.has_change_permission(request)
        extra_context = {
            **(extra_context or {}),
            "can_import": can_change and self.has_add_permission(request),
            "can_reset": can_change,
        }
        return super().changelist_view(request, extra_context)

    @admin.action(description="Use default synchronization settings", permissions=["change"])
    def reset_to_defaults(self, request, queryset):
        names = sorted(queryset.values_list("name", flat=True))
        others = [name for name in names if name not in DEFAULT_NAMES]
        if others:
            self.message_user(
                request, f"Only default mappings can be reset; not: {', '.join(others)}.", level=messages.ERROR
            )
            return None
        companies = set(queryset.values_list("company", flat=True))
        if len(companies) > 1:
            self.message_user(request, "Reset the mappings of one company at a time.", level=messages.ERROR)
            return None
        url = reverse("admin:mappings_tablemapping_reset")
        company = companies.pop() if companies else None
        return HttpResponseRedirect(f"{url}?names={','.join(names)}" + (f"&company={company}" if company else ""))

    def reset_view(self, request):
        """Show what resetting would change; apply it when confirmed (POST)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        raw = request.POST.get("names") if request.method == "POST" else request.GET.get("names")
        names = [n for n in (raw or "").split(",") if n] or None
        company_pk = (request.POST if request.method == "POST" else request.GET).get("company", "")
        company = (
            Connection.objects.filter(pk=company_pk, kind=ConnectionKind.BUSINESS_CENTRAL).first()
            if company_pk.isdigit()
            else None
        )
        try:
            if request.method == "POST" and request.POST.get("confirm") == "yes":
                diffs = table_mapping_reset_to_defaults(names=names, user=request.user, company=company)
                changed = [d.name for d in diffs if d.changed]
                text = f"Reset to the defaults: {', '.join(changed)}." if changed else "Already the defaults."
                self.message_user(request, text + " Couplings were kept.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:mappings_tablemapping_changelist"))
            diffs = table_mapping_reset_to_defaults(names=names, dry_run=True, company=company)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:mappings_tablemapping_changelist"))
        return self._page(
            request,
            "reset_confirm.html",
            "Use default synchronization settings",
            diffs=diffs,
            names=",".join(names or []),
            company=company,
            has_changes=any(d.changed for d in diffs),
        )

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        company_pk = request.GET.get("company", "")
        company = Connection.objects.filter(pk=company_pk).first() if company_pk.isdigit() else None
        try:
            document = configuration_export(company)
        except CompanyRequired as exc:
            self.message_user(request, f"{exc} (Filter the list by company, then export.)", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:mappings_tablemapping_changelist"))
        response = HttpResponse(json.dumps(document, indent=2, ensure_ascii=False), content_type="application/json")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="syncadmin-mappings-{stamp}.json"'
        return response

    def import_view(self, request):
        """Upload a file, see the checks and the differences, then confirm to apply them all at once."""
        if not self.has_change_permission(request) or not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        context = {"form": form}
        if request.method == "POST" and form.is_valid():
            run = validation_run(request)
            warnings: list[str] = []
            options = {
                "data": form.cleaned_data["data"],
                "delete_missing": form.cleaned_data["delete_missing"],
                "warnings": warnings,
                "company": form.cleaned_data["company"],
            }
            try:
                if request.POST.get("confirm") == "yes":
                    diffs = configuration_import(**options, user=request.user, metadata=run.metadata)
                    changed = [d.name for d in diffs if d.changed]
                    text = f"Imported: {', '.join(changed)}." if changed else "Nothing to change."
                    self.message_user(request, text, messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:mappings_tablemapping_changelist"))
                diffs = configuration_import(**options, dry_run=True, metadata=run.metadata)
                context.update(
                    diffs=diffs, has_changes=any(d.changed for d in diffs), content=form.cleaned_data["content"]
                )
            except ImportRefused as exc:
                context["problems"] = exc.problems
            except CompanyRequired as exc:
                context["problems"] = [str(exc)]
            finally:
                run.metadata.close()
            for warning in warnings:
                messages.warning(request, warning)
        return self._page(request, "import.html", "Import mappings", **context)

    def test_filter_view(self, request, object_id):
        """Count the records each filter selects, on both systems (unsaved filters can be tried too)."""
        mapping = get_object_or_404(TableMapping, pk=object_id)
        if not self.has_view_permission(request, mapping):
            raise PermissionDenied
        initial = {"table_filter": mapping.table_filter, "integration_table_filter": mapping.integration_table_filter}
        form = TestFilterForm(request.GET if "table_filter" in request.GET else None, initial=initial)
        filters = form.cleaned_data if form.is_valid() else initial
        # Counted as the mapping's runs read: its company's Business Central, and on Dataverse its company's rows
        # or no company's (a second company's page counted the first company's records).
        metadata = MetadataCache(mapping)
        results = []
        try:
            for side, key, entity_set in (
                ("bc", "table_filter", mapping.bc_entity_set),
                ("dataverse", "integration_table_filter", mapping.dataverse_entity_set),
            ):
                expression = filters.get(key) or ""
                counted = mapping.dataverse_rows_filter(expression) if side == "dataverse" else expression
                results.append(self._count(metadata, side, key, entity_set, expression, counted))
        finally:
            metadata.close()
        return self._page(
            request,
            "test_filter.html",
            f"Test filter: {mapping.name}" + (f" ({mapping.company})" if mapping.company_id else ""),
            mapping=mapping,
            form=form,
            results=results,
        )

    @staticmethod
    def _count(metadata, side, key, entity_set, expression, counted) -> dict:
        """Check `expression` (the filter typed) and count the records of `counted` (it, narrowed to the company)."""
        result = {"system": SIDE_LABEL[side], "entity_set": entity_set, "filter": expression, "count": None}
        if counted != expression:
            result["counted"] = counted
        syntax = check_filter(expression, None, side=side, field=key)
        if syntax:
            result["error"] = syntax[0].message
            return result
        try:
            table = metadata.table(side, entity_set)
            problems = check_filter(expression, table, side=side, field=key)
            if problems:
                result["error"] = " ".join(p.message for p in problems)
                return result
            result["count"] = metadata.count(side, entity_set, counted)
        except MetadataUnavailable as exc:
            result["error"] = f"Not counted. {exc.reason}"
        return result

    def transformation_preview_view(self, request):
        """Type a value and see what a rule chain makes of it."""
        if not self.has_view_permission(request):
            raise PermissionDenied  # it shows a field mapping's rules
        initial = {}
        field_mapping = None
        if request.GET.get("field_mapping", "").isdigit():
            field_mapping = FieldMapping.objects.filter(pk=request.GET["field_mapping"]).first()
            if field_mapping is not None:
                initial["rules"] = json.dumps(field_mapping.transformation)
        form = TransformationPreviewForm(request.GET if "rules" in request.GET else None, initial=initial)
        result = error = None
        if form.is_valid():
            try:
                rules = json.loads(form.cleaned_data["rules"])
                result = repr(apply_transformation(rules, form.cleaned_data["value"]))
            except json.JSONDecodeError as exc:
                error = f"The rules are not valid JSON: {exc}."
            except TransformationError as exc:
                error = str(exc)
        return self._page(
            request,
            "transformation_preview.html",
            "Try a transformation",
            form=form,
            result=result,
            error=error,
            field_mapping=field_mapping,
        )


class MappingChangeAdmin(admin.ModelAdmin):
    """Read-only record of resets and imports."""

    list_display = ["created_at", "action", "who", "mapping_names"]
    list_filter = ["action"]
    readonly_fields = ["action", "user", "actor", "created_at", "mapping_names", "summary_display"]
    fields = list(readonly_fields)
    show_full_result_count = False

    @admin.display(description="who")
    def who(self, obj):
        return obj.user or obj.actor

    @admin.display(description="changes")
    def summary_display(self, obj):
        return format_html("<pre>{}</pre>", obj.summary)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
