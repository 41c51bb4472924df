"""django-filter FilterSets for the sync error list, its admin sidebar filter, and `sync_error_list`."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from adminkit.admin import FilterSetListFilter
from connectors.odata import as_uuid
from jobs.choices import ErrorClass, ErrorState
from jobs.models import SyncError
from mappings.choices import Direction
from mappings.models import TableMapping

ALL_STATES = "all"
# "Open" first: with no choice the list shows what is wrong now; "All" is the history, one click away.
STATES = [*ErrorState.choices, (ALL_STATES, "All, with the resolved (history)")]

DIRECTIONS = [(Direction.TO_DATAVERSE, "To Dataverse"), (Direction.FROM_DATAVERSE, "From Dataverse")]


class SyncErrorFilterSet(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(choices=STATES, method="in_state", label="State", empty_label=None)
    text = django_filters.CharFilter(method="search", label="Text, name or id")
    table_mapping = django_filters.ModelChoiceFilter(
        queryset=TableMapping.objects.all(), label="Mapping", empty_label="Any"
    )
    job = django_filters.NumberFilter(field_name="job_id", label="Job number")
    direction = django_filters.ChoiceFilter(choices=DIRECTIONS, empty_label="Any")
    error_class = django_filters.ChoiceFilter(choices=ErrorClass.choices, label="Error class", empty_label="Any")
    # Compared as datetimes (not created_at__date) so the created_at index is used.
    since = django_filters.DateFilter(
        method="date_range", label="From (date)", widget=forms.DateInput({"type": "date"})
    )
    until = django_filters.DateFilter(method="date_range", label="To (date)", widget=forms.DateInput({"type": "date"}))

    class Meta:
        model = SyncError
        fields = ["state", "text", "table_mapping", "job", "direction", "error_class", "since", "until"]

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("state"):
            queryset = queryset.open()  # no state chosen: what is wrong now
        return queryset

    def in_state(self, queryset, name, value):
        return queryset if value == ALL_STATES else queryset.filter(state=value)

    def date_range(self, queryset, name, value):
        start = timezone.make_aware(datetime.combine(value, time.min))
        if name == "since":
            return queryset.filter(created_at__gte=start)
        return queryset.filter(created_at__lt=start + timedelta(days=1))

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        record_id = as_uuid(value)
        if record_id:
            return queryset.filter(Q(bc_id=record_id) | Q(dataverse_id=record_id))
        return queryset.filter(
            Q(message__icontains=value) | Q(bc_name__icontains=value) | Q(dataverse_name__icontains=value)
        )


def sync_error_list(*, filters: dict | None = None):
    """Sync errors matching the filters (a dict of the FilterSet's fields), newest first; the open ones unless the
    filters choose a state ("all" for every state)."""
    return SyncErrorFilterSet(filters or {}, queryset=SyncError.objects.select_related("table_mapping")).qs


class SyncErrorListFilter(FilterSetListFilter):
    filterset_class = SyncErrorFilterSet

    def queryset(self, request, queryset):
        if not self.data:
            return queryset.open()  # the list without filters: what is wrong now
        return super().queryset(request, queryset)
