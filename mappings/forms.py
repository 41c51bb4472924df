"""Admin forms for table and field mappings: they turn the submitted values into plain data and apply
mappings.validation to it, attaching each problem to the field it is about. Nothing invalid is saved."""

from __future__ import annotations

import dataclasses
import json

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from adminkit.widgets import KeyValueWidget, RowsWidget, scalar_from_text, scalar_text
from connectors.choices import ConnectionKind
from connectors.models import Connection
from mappings.choices import Direction, UpdateConflictResolution
from mappings.importing import ImportRefused, import_document_parse, import_size_check
from mappings.metadata import MetadataCache
from mappings.models import FieldMapping, NewRecordTemplate, TableMapping
from mappings.serialization import FIELD_DEFAULTS, TABLE_DEFAULTS, TEMPLATE_DEFAULTS
from mappings.services import mappings_sharing_tables
from mappings.transformations import RULES
from mappings.validation import (
    Problem,
    check_shared_tables,
    validate_field_mappings,
    validate_new_record_templates,
    validate_table,
)


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
            "bc_entity_set": forms.TextInput(attrs={"list": "bc-tables", "size": 40}),  # custom API routes are long
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

    def clean_record_priority(self):
        return self.cleaned_data.get("record_priority") or 0  # left blank: the first, as when only one mapping

    def clean_skip_after_failures(self):
        return self.cleaned_data.get("skip_after_failures") or {}

    def clean(self):
        cleaned = super().clean()
        run = self.validation_run or ValidationRun()
        data = {"name": cleaned.get("name") or self.instance.name or ""}
        for key, default in TABLE_DEFAULTS.items():
            data[key] = cleaned.get(key, getattr(self.instance, key, default))
        data["dependencies"] = [dep.name for dep in cleaned.get("dependencies") or []]
        company = cleaned.get("company", self.instance.company if self.instance.company_id else None)
        if company is None and "company" in self.fields:
            several = Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL, enabled=True).count() > 1
            if several:
                self.add_error("company", "Several Business Central companies are enabled: choose this mapping's.")
        others = [d for d in cleaned.get("dependencies") or [] if d.company_id != (company.pk if company else None)]
        if others:
            self.add_error(
                "dependencies" if "dependencies" in self.fields else None,
                f"{', '.join(mapping_label(d) for d in others)}: a mapping depends only on mappings of its own company "
                f"({company or 'no company'}).",
            )
        problems = validate_table(data, metadata=run.metadata, dependency_graph=self._dependency_graph(data))
        problems += check_shared_tables(
            data, mappings_sharing_tables(data, company=company, exclude_pk=self.instance.pk)
        )
        for problem in problems:
            if problem.warning:
                run.warn(problem)
            else:
                self.add_error(problem.field if problem.field in self.fields else None, problem.message)
        return cleaned

    def _dependency_graph(self, data) -> dict[str, set[str]]:
        """Every other mapping's dependencies by name, with this mapping under its new name."""
        # Names are unique within a company, and dependencies stay within it.
        company = self.cleaned_data.get("company", self.instance.company if self.instance.company_id else None)
        names = dict(TableMapping.objects.filter(company=company).values_list("pk", "name"))
        if self.instance.pk:
            names[self.instance.pk] = data["name"]
        graph: dict[str, set[str]] = {name: set() for name in names.values()}
        through = TableMapping.dependencies.through.objects.values_list("from_tablemapping_id", "to_tablemapping_id")
        for source, target in through:
            if source != self.instance.pk and source in names and target in names:
                graph[names[source]].add(names[target])
        return graph


def mapping_label(mapping: TableMapping) -> str:
    """A mapping's name in a choice list, with its company: each company has its own CUSTOMER."""
    return mapping.label


class JSONTextarea(forms.Textarea):
    """A small box: most rows hold [] or {}; it grows by dragging when a rule chain is typed."""

    def __init__(self):
        super().__init__(attrs={"rows": 1, "cols": 22, "class": "mapping-json", "style": "width: auto"})


# Options whose value is a number (the others are texts): substring's start and length, round's precision.
NUMERIC_OPTIONS = {"start", "length", "precision"}
OPTION_NAMES = list(dict.fromkeys(name for required, optional in RULES.values() for name in (*required, *optional)))


class RuleListWidget(RowsWidget):
    """A transformation (a JSON list of rules) edited as rows: the rule, then the inputs of its options."""

    headings = ("rule", "options")
    try_url = ""  # set per field mapping by the form: the page that applies the saved rules to a typed value
    help_text = (
        "Applied in order, top to bottom. Choose an empty rule to remove a row. "
        "substring: start is 1-based; round: precision such as 0.01, mode nearest, up or down; "
        "date_format: e.g. %d-%m-%Y."
    )

    def rows_of(self, value):
        loaded = _loaded_list(value)
        if loaded is None or not all(isinstance(rule, dict) for rule in loaded):
            return None
        return [
            {key: scalar_text(item) if key != "rule" else str(item) for key, item in rule.items()} for rule in loaded
        ]

    def value_of(self, rows):
        rules = []
        for row in rows:
            name = row.get("rule", "").strip()
            if not name:
                continue
            required, optional = RULES.get(name, ((), ()))
            rule: dict = {"rule": name}
            for option in (*required, *optional):
                text = row.get(option, "")
                if text.strip() == "" and option in optional:
                    continue
                rule[option] = scalar_from_text(text) if option in NUMERIC_OPTIONS else text
            rules.append(rule)
        return rules

    def summary(self, rows):
        text = " → ".join(row.get("rule", "") for row in rows)
        return text if len(text) <= 28 else text[:26] + "…"

    def cells(self, name, index, row):
        chosen = row.get("rule", "")
        used = set(RULES.get(chosen, ((), ()))[0] + RULES.get(chosen, ((), ()))[1])
        options = format_html_join(
            "",
            '<option value="{}" data-shows="{}"{}>{}</option>',
            [("", "", " selected" if not chosen else "", "---------")]
            + [
                (rule, " ".join((*required, *optional)), " selected" if rule == chosen else "", rule)
                for rule, (required, optional) in RULES.items()
            ],
        )
        inputs = format_html_join(
            "",
            '<input name="{}__{}__{}" value="{}" placeholder="{}" data-option="{}" size="7"{}> ',
            [
                (name, index, option, row.get(option, ""), option, option, "" if option in used else " hidden")
                for option in OPTION_NAMES
            ],
        )
        return format_html(
            '<td><select name="{}__{}__rule" data-shows-options>{}</select></td><td class="nowrap">{}</td>',
            name,
            index,
            options,
            inputs,
        )


def _loaded_list(value):
    if value in (None, ""):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, list) else None


class FieldMappingForm(forms.ModelForm):
    class Meta:
        model = FieldMapping
        fields = ["position", *FIELD_DEFAULTS]
        widgets = {
            # Sized so that the whole grid fits a 1,366 px screen with every value whole (adminkit/fit.css sizes
            # the text inputs to their value; `size` is the width where the browser cannot).
            "bc_field": forms.TextInput(attrs={"list": "bc-fields", "size": 16}),
            "dataverse_field": forms.TextInput(attrs={"list": "dataverse-fields", "size": 18}),
            "constant_value": forms.TextInput(attrs={"size": 6}),
            "bc_code_table": forms.TextInput(attrs={"size": 8}),
            "transformation": RuleListWidget(),
            "value_map": KeyValueWidget("Business Central value", "Dataverse value"),
            "position": forms.NumberInput(attrs={"style": "width: 3.5em"}),
            "match_priority": forms.NumberInput(attrs={"style": "width: 3em"}),
        }

    # The grid's columns are narrow (18 of them on a 1,366 px screen): these selects say it in a few words, as the
    # row's title does ("city <-> address1_city"), and their title says it whole.
    SHORT_LABELS = {
        "direction": {
            Direction.BIDIRECTIONAL: "↔ Both ways",
            Direction.TO_DATAVERSE: "→ Dataverse",
            Direction.FROM_DATAVERSE: "← Dataverse",
        },
        "update_conflict_resolution": {
            UpdateConflictResolution.NONE: "None (report)",
            UpdateConflictResolution.SEND_TO_DATAVERSE: "BC wins",
            UpdateConflictResolution.GET_FROM_DATAVERSE: "Dataverse wins",
        },
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, short in self.SHORT_LABELS.items():
            field = self.fields[name]
            field.widget.attrs["title"] = "; ".join(
                f"{short.get(value, label)}: {label}" for value, label in field.choices
            )
            field.choices = [(value, short.get(value, label)) for value, label in field.choices]
        for name in ("bc_field", "dataverse_field", "constant_value", "bc_code_table"):
            # The whole value on hover, should a browser cut it.
            value = self[name].value()
            if value:
                self.fields[name].widget.attrs["title"] = value
        if self.instance.pk:  # "try" opens the preview page with this field mapping's saved rules
            url = reverse("admin:mappings_tablemapping_transformation_preview")
            self.fields["transformation"].widget.try_url = f"{url}?field_mapping={self.instance.pk}"

    def clean_transformation(self):
        return self.cleaned_data.get("transformation") or []

    def clean_value_map(self):
        twice = self.fields["value_map"].widget.duplicate_keys(self.data, self.add_prefix("value_map"))
        if twice:
            raise ValidationError(
                f"value map: {', '.join(repr(key) for key in twice)} is in more than one row; keep one row per "
                "Business Central value."
            )
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
            lookup = form.cleaned_data.get("lookup_mapping")
            if lookup is not None and lookup.company_id != parent.company_id:
                form.add_error(
                    "lookup_mapping",
                    f"{mapping_label(lookup)} is another company's mapping: a lookup goes through the couplings of a "
                    f"mapping of {parent.company or 'no company'}, like this one.",
                )
                continue
            rows.append(self._as_dict(form.cleaned_data))
            forms_by_row.append(form)
        data = {"name": parent.name, "field_mappings": rows}
        data.update({key: getattr(parent, key) for key in TABLE_DEFAULTS})
        lookup_tables = dict(
            TableMapping.objects.filter(company_id=parent.company_id).values_list("name", "dataverse_entity_set")
        )
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
    company = forms.ModelChoiceField(
        queryset=Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL),
        required=False,
        help_text="The company whose mappings the file replaces. Blank: the one company that has mappings.",
    )
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
