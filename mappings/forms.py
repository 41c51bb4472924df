"""Admin forms for table and field mappings: they turn the submitted values into plain data and apply
mappings.validation to it, attaching each problem to the field it is about. Nothing invalid is saved."""

from __future__ import annotations

import dataclasses

from django import forms
from django.core.exceptions import ValidationError

from mappings.importing import ImportRefused, import_document_parse, import_size_check
from mappings.metadata import MetadataCache
from mappings.models import FieldMapping, NewRecordTemplate, TableMapping
from mappings.serialization import FIELD_DEFAULTS, TABLE_DEFAULTS, TEMPLATE_DEFAULTS
from mappings.validation import Problem, validate_field_mappings, validate_new_record_templates, validate_table


@dataclasses.dataclass
class ValidationRun:
    """What one admin request shares between the table form and the field mapping formset."""

    metadata: MetadataCache = dataclasses.field(default_factory=MetadataCache)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def warn(self, problem: Problem) -> None:
        if problem.message not in self.warnings:
            self.warnings.append(problem.message)


def validation_run(request) -> ValidationRun:
    """Return the request's validation run (one metadata cache per request), creating it on first use."""
    run = getattr(request, "_mappings_validation_run", None)
    if run is None:
        run = ValidationRun()
        request._mappings_validation_run = run
    return run


class TableMappingForm(forms.ModelForm):
    validation_run: ValidationRun | None = None  # set per request by the admin

    class Meta:
        model = TableMapping
        fields = ["name", *(key for key in TABLE_DEFAULTS if key != "is_default"), "dependencies"]
        widgets = {
            "table_filter": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "integration_table_filter": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "bc_entity_set": forms.TextInput(attrs={"list": "bc-tables"}),
            "dataverse_entity_set": forms.TextInput(attrs={"list": "dataverse-tables"}),
            "bc_name_field": forms.TextInput(attrs={"list": "bc-fields"}),
            "dataverse_name_field": forms.TextInput(attrs={"list": "dataverse-fields"}),
            "dataverse_primary_key": forms.TextInput(attrs={"list": "dataverse-fields"}),
        }

    # A cleared JSON box means "nothing", stored as an empty object rather than a database NULL.
    def clean_bc_new_record_values(self):
        return self.cleaned_data.get("bc_new_record_values") or {}

    def clean_dataverse_new_record_values(self):
        return self.cleaned_data.get("dataverse_new_record_values") or {}

    def clean_skip_after_failures(self):
        return self.cleaned_data.get("skip_after_failures") or {}

    def clean(self):
        cleaned = super().clean()
        run = self.validation_run or ValidationRun()
        data = {"name": cleaned.get("name") or self.instance.name or ""}
        for key, default in TABLE_DEFAULTS.items():
            data[key] = cleaned.get(key, getattr(self.instance, key, default))
        data["dependencies"] = [dep.name for dep in cleaned.get("dependencies") or []]
        for problem in validate_table(data, metadata=run.metadata, dependency_graph=self._dependency_graph(data)):
            if problem.warning:
                run.warn(problem)
            else:
                self.add_error(problem.field if problem.field in self.fields else None, problem.message)
        return cleaned

    def _dependency_graph(self, data) -> dict[str, set[str]]:
        """Every other mapping's dependencies by name, with this mapping under its new name."""
        names = dict(TableMapping.objects.values_list("pk", "name"))
        if self.instance.pk:
            names[self.instance.pk] = data["name"]
        graph: dict[str, set[str]] = {name: set() for name in names.values()}
        through = TableMapping.dependencies.through.objects.values_list("from_tablemapping_id", "to_tablemapping_id")
        for source, target in through:
            if source != self.instance.pk:
                graph[names[source]].add(names[target])
        return graph


class JSONTextarea(forms.Textarea):
    """A small box: most rows hold [] or {}; it grows by dragging when a rule chain is typed."""

    def __init__(self):
        super().__init__(attrs={"rows": 1, "cols": 22, "class": "mapping-json", "style": "width: auto"})


class FieldMappingForm(forms.ModelForm):
    class Meta:
        model = FieldMapping
        fields = ["position", *FIELD_DEFAULTS]
        widgets = {
            "bc_field": forms.TextInput(attrs={"list": "bc-fields", "size": 18}),
            "dataverse_field": forms.TextInput(attrs={"list": "dataverse-fields", "size": 18}),
            "constant_value": forms.TextInput(attrs={"size": 10}),
            "transformation": JSONTextarea(),
            "value_map": JSONTextarea(),
            "position": forms.NumberInput(attrs={"style": "width: 4em"}),
            "match_priority": forms.NumberInput(attrs={"style": "width: 4em"}),
        }

    def clean_transformation(self):
        return self.cleaned_data.get("transformation") or []

    def clean_value_map(self):
        return self.cleaned_data.get("value_map") or {}


class FieldMappingFormSet(forms.BaseInlineFormSet):
    """Checks the field mappings together with their table mapping (directions, types, lookups)."""

    validation_run: ValidationRun | None = None

    def clean(self):
        super().clean()
        run = self.validation_run or ValidationRun()
        parent = self.instance
        rows, forms_by_row = [], []
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or (self.can_delete and self._should_delete_form(form)):
                continue
            if not form.has_changed() and form.instance.pk is None:
                continue  # an empty extra row
            if not form.is_valid():
                continue  # its own errors are already shown
            rows.append(self._as_dict(form.cleaned_data))
            forms_by_row.append(form)
        data = {"name": parent.name, "field_mappings": rows}
        data.update({key: getattr(parent, key) for key in TABLE_DEFAULTS})
        lookup_tables = dict(TableMapping.objects.values_list("name", "dataverse_entity_set"))
        if parent.name:
            lookup_tables[parent.name] = parent.dataverse_entity_set
        table_errors = []
        for problem in validate_field_mappings(data, metadata=run.metadata, lookup_tables=lookup_tables):
            if problem.warning:
                run.warn(problem)
            elif problem.row is not None:
                form = forms_by_row[problem.row]
                form.add_error(problem.field if problem.field in form.fields else None, problem.message)
            else:
                table_errors.append(problem.message)
        if table_errors:
            raise ValidationError(table_errors)

    @staticmethod
    def _as_dict(cleaned) -> dict:
        data = {key: cleaned.get(key, default) for key, default in FIELD_DEFAULTS.items()}
        lookup = cleaned.get("lookup_mapping")
        data["lookup_mapping"] = lookup.name if lookup else None
        for key in ("transformation", "value_map"):
            if data[key] is None:
                data[key] = FIELD_DEFAULTS[key]
        return data


class NewRecordTemplateForm(forms.ModelForm):
    class Meta:
        model = NewRecordTemplate
        fields = ["position", *TEMPLATE_DEFAULTS]
        widgets = {
            "source_filter": forms.Textarea(attrs={"rows": 1, "cols": 50}),
            "values": JSONTextarea(),
            "position": forms.NumberInput(attrs={"style": "width: 4em"}),
        }

    def clean_values(self):
        return self.cleaned_data.get("values") or {}


class NewRecordTemplateFormSet(forms.BaseInlineFormSet):
    """Checks each template's filter and values against the table mapping's two tables, as the import does."""

    validation_run: ValidationRun | None = None

    def clean(self):
        super().clean()
        run = self.validation_run or ValidationRun()
        rows, forms_by_row = [], []
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or (self.can_delete and self._should_delete_form(form)):
                continue
            if (not form.has_changed() and form.instance.pk is None) or not form.is_valid():
                continue
            rows.append({key: form.cleaned_data.get(key, default) for key, default in TEMPLATE_DEFAULTS.items()})
            forms_by_row.append(form)
        parent = self.instance
        data = {key: getattr(parent, key) for key in ("bc_entity_set", "dataverse_entity_set")}
        data["new_record_templates"] = rows
        for problem in validate_new_record_templates(data, metadata=run.metadata):
            if problem.warning:
                run.warn(problem)
            elif problem.row is not None:
                form = forms_by_row[problem.row]
                form.add_error(problem.field if problem.field in form.fields else None, problem.message)


class ImportForm(forms.Form):
    file = forms.FileField(required=False, help_text="A JSON file made by Export (format syncadmin.mappings).")
    content = forms.CharField(required=False, widget=forms.HiddenInput)
    delete_missing = forms.BooleanField(
        required=False,
        initial=True,
        label="Delete mappings that are not in the file",
        help_text="Makes the configuration exactly the file's. Deleting a mapping also deletes its couplings.",
    )

    def clean(self):
        cleaned = super().clean()
        upload, content = cleaned.get("file"), cleaned.get("content")
        if upload:
            try:
                import_size_check(upload.size)
            except ImportRefused as exc:
                raise ValidationError(exc.problems[0]) from None
            raw = upload.read()
            try:
                content = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError("The file is not UTF-8 text.") from None
        if not content:
            raise ValidationError("Choose a file to import.")
        try:
            cleaned["data"] = import_document_parse(content)
        except ImportRefused as exc:
            raise ValidationError(exc.problems[0]) from None
        cleaned["content"] = content
        return cleaned


class TestFilterForm(forms.Form):
    table_filter = forms.CharField(
        required=False, label="Table filter (Business Central)", widget=forms.Textarea(attrs={"rows": 2, "cols": 80})
    )
    integration_table_filter = forms.CharField(
        required=False,
        label="Integration table filter (Dataverse)",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 80}),
    )


class TransformationPreviewForm(forms.Form):
    rules = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        initial='[{"rule": "trim"}, {"rule": "uppercase"}]',
        help_text="A JSON list of rules, applied in order.",
    )
    value = forms.CharField(required=False, strip=False, help_text="The value to transform.")
