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
from django.contrib.admin.views.main import PAGE_VAR
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
    """Count at most about CAP rows: a list of 100,000 rows must not pay for COUNT(*) of the whole table on every page.

    Past the cap the count is shown as "10,000+" (`count_label`), and the pages past it stay reachable: the count goes
    on a few pages beyond the page asked for (`page_number`), so the last page link always leads further.
    """

    CAP = 10_000
    PAGES_AHEAD = 10

    def __init__(self, *args, page_number: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.page_number = max(page_number, 1)
        self.capped = False

    @cached_property
    def count(self):
        limit = max(self.CAP, (self.page_number + self.PAGES_AHEAD) * self.per_page)
        counted = self.object_list.order_by()[: limit + 1].count()
        self.capped = counted > limit
        return min(counted, limit)

    @property
    def count_label(self) -> str:
        return f"{self.count:,}+" if self.capped else str(self.count)


class CappedCountAdminMixin:
    """For a ModelAdmin: the capped paginator, told which page is asked for; the list says "10,000+" past the cap
    (the app's admin/<app>/pagination.html includes adminkit/capped_pagination.html). Set show_full_result_count
    to False beside it: a "full count" would COUNT(*) the whole table again."""

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1
        return CappedCountPaginator(queryset, per_page, orphans, allow_empty_first_page, page_number=page_number)
