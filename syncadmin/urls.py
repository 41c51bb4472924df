from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "syncadmin"
admin.site.site_title = "syncadmin"
admin.site.index_title = "Business Central and Dataverse synchronization"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("webhooks/", include("jobs.webhooks")),
    path("", include("operations.urls")),  # /metrics and /healthz
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
