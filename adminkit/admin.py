"""Admin list helpers for large tables: a django-filter FilterSet in the filter sidebar, and a paginator that counts
at most a capped number of rows.

The admin's own `list_filter` builds one choice list per field; a FilterSet gives a search box, typed inputs and
one form, and the same FilterSet serves selectors and tests.
"""

from __future__ import annotations

from functools import cached_property

import django_filters
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.paginator import Paginator


class FilterSetListFilter(admin.ListFilter):
    """Show a django-filter FilterSet as one form in the admin's filter sidebar, and apply it.

    Subclass with `filterset_class` set. The FilterSet's parameters are taken out of the admin's lookup
    parameters, so the admin does not try to read them as field lookups.
    """

    filterset_class: type[django_filters.FilterSet]
    title = "filters"
    template = "adminkit/filterset_filter.html"

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


class CappedCountPaginator(Paginator):
    """Count at most CAP rows: a list of 100,000 rows must not pay for COUNT(*) of the whole table on every page.

    Past the cap the list shows "CAP results" and pages up to there; narrowing the filters finds the rest.
    """

    CAP = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.CAP].count()


class FitScreenMixin:
    """For every product ModelAdmin: the stylesheet that fits its list and form to a 1,366 px screen."""

    class Media:
        css = {"all": ["adminkit/fit.css"]}
