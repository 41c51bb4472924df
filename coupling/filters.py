"""django-filter FilterSets for the coupling list, and the glue that shows any FilterSet in the admin's sidebar.

The admin's own `list_filter` builds one choice list per field; a FilterSet gives a search box, typed inputs and
one form, and the same FilterSet serves selectors and tests (`coupling_list(filters=...)`).
"""

from __future__ import annotations

import uuid
from functools import cached_property

import django_filters
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator
from django.db.models import Q

from coupling.choices import SyncResult
from coupling.models import Coupling
from mappings.models import TableMapping

RESULT_CHOICES = [(SyncResult.SUCCESS, "Success"), (SyncResult.FAILURE, "Failure"), ("none", "Not synchronized yet")]


def as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


class CouplingFilterSet(django_filters.FilterSet):
    text = django_filters.CharFilter(method="search", label="Name or id")
    table_mapping = django_filters.ModelChoiceFilter(
        queryset=TableMapping.objects.all(), label="Mapping", empty_label="Any"
    )
    skipped = django_filters.ChoiceFilter(
        choices=[("true", "Yes"), ("false", "No")], method="is_skipped", label="Skipped", empty_label="Any"
    )
    to_dataverse = django_filters.ChoiceFilter(
        choices=RESULT_CHOICES, method="last_result", label="Last result to Dataverse", empty_label="Any"
    )
    from_dataverse = django_filters.ChoiceFilter(
        choices=RESULT_CHOICES, method="last_result", label="Last result from Dataverse", empty_label="Any"
    )

    class Meta:
        model = Coupling
        fields = ["text", "table_mapping", "skipped", "to_dataverse", "from_dataverse"]

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        record_id = as_uuid(value)
        if record_id:  # an id names one record exactly: use the unique indexes, not a scan
            return queryset.filter(Q(bc_id=record_id) | Q(dataverse_id=record_id))
        if value.isdigit():
            return queryset.filter(Q(pk=int(value)) | Q(bc_name__icontains=value) | Q(dataverse_name__icontains=value))
        return queryset.filter(Q(bc_name__icontains=value) | Q(dataverse_name__icontains=value))

    def is_skipped(self, queryset, name, value):
        return queryset.filter(skipped=value == "true")

    def last_result(self, queryset, name, value):
        column = "last_result_to_dataverse" if name == "to_dataverse" else "last_result_from_dataverse"
        return queryset.filter(**{column: "" if value == "none" else value})


def coupling_list(*, filters: dict | None = None):
    """Couplings matching the filters (a dict of the FilterSet's fields), newest first."""
    return CouplingFilterSet(filters or {}, queryset=Coupling.objects.select_related("table_mapping")).qs


class FilterSetListFilter(admin.ListFilter):
    """Show a django-filter FilterSet as one form in the admin's filter sidebar, and apply it.

    Subclass with `filterset_class` set. The FilterSet's parameters are taken out of the admin's lookup
    parameters, so the admin does not try to read them as field lookups.
    """

    filterset_class: type[django_filters.FilterSet]
    title = "filters"
    template = "admin/coupling/filterset_filter.html"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        self.data = {}
        for name in self.expected_parameters():
            if name in params:
                value = params.pop(name)
                self.data[name] = value[-1] if isinstance(value, list) else value
        self.used_parameters = dict(self.data)
        self.filterset = self.filterset_class(self.data or None, queryset=model._default_manager.none())
        self.other_params = {k: (v[-1] if isinstance(v, list) else v) for k, v in params.items()}

    def has_output(self):
        return True

    def expected_parameters(self):
        return list(self.filterset_class.base_filters)

    def queryset(self, request, queryset):
        if not self.data:
            return queryset
        filterset = self.filterset_class(self.data, queryset=queryset)
        if not filterset.is_valid():
            raise IncorrectLookupParameters(filterset.errors)
        return filterset.qs

    def choices(self, changelist):
        # The form is rendered from `spec.filterset`; this yields nothing the default template would show.
        return []


class CouplingListFilter(FilterSetListFilter):
    filterset_class = CouplingFilterSet


class CappedCountPaginator(Paginator):
    """Count at most CAP rows: a list of 100,000 rows must not pay for COUNT(*) of the whole table on every page.

    Past the cap the list shows "CAP results" and pages up to there; narrowing the filters finds the rest.
    """

    CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.CAP].count()
