from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from operations.dashboard_view import dashboard_index

admin.site.site_header = "syncadmin"
admin.site.site_title = "syncadmin"
admin.site.index_title = "Business Central and Dataverse synchronization"
admin.site.index_template = "admin/operations/dashboard.html"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/rq/", include("django_rq.urls")),
    # The start page: the dashboard, then the list of models (before the admin's own index, which it extends).
    path("admin/", admin.site.admin_view(dashboard_index), name="dashboard"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("jobs.webhooks")),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
