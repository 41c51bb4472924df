"""The coupling list's django-filter FilterSet, its admin sidebar filter, and `coupling_list` (the same filters for
selectors and tests)."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from adminkit.admin import FilterSetListFilter
from connectors.choices import ConnectionKind
from connectors.models import Connection
from connectors.odata import as_uuid
from coupling.choices import SyncResult
from coupling.models import Coupling
from mappings.models import TableMapping

RESULT_CHOICES = [(SyncResult.SUCCESS, "Success"), (SyncResult.FAILURE, "Failure"), ("none", "Not synchronized yet")]


class CouplingFilterSet(django_filters.FilterSet):
    text = django_filters.CharFilter(method="search", label="Name or id")
    company = django_filters.ModelChoiceFilter(
        field_name="table_mapping__company",
        queryset=Connection.objects.filter(kind=ConnectionKind.BUSINESS_CENTRAL),
        label="Company",
        empty_label="Any",
    )
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
        fields = ["text", "company", "table_mapping", "skipped", "to_dataverse", "from_dataverse"]

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


class CouplingListFilter(FilterSetListFilter):
    filterset_class = CouplingFilterSet
