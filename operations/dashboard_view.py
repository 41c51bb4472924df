"""The admin's start page: the dashboard above Django's list of models (syncadmin/urls.py routes /admin/ here)."""

from django.contrib import admin

from operations.dashboard import DEFAULT_RANGE, dashboard_context


def dashboard_index(request):
    """Django's admin index, with the dashboard's data; the template (`admin.site.index_template`) shows both."""
    range_key = request.GET.get("range", DEFAULT_RANGE)
    return admin.site.index(request, extra_context=dashboard_context(request.user, range_key=range_key))
