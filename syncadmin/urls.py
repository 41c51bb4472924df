from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from jobs.permissions import rq_dashboard_api, rq_dashboard_page

admin.site.site_header = "syncadmin"
admin.site.site_title = "syncadmin"
admin.site.index_title = "Business Central and Dataverse synchronization"
admin.site.index_template = "admin/syncadmin_index.html"  # adds the RQ dashboard link for those who may use it


def _rq_dashboard_urls():
    """django-rq's pages, each behind the dashboard permission (django-rq itself lets in any staff user)."""
    api = [re_path(str(p.pattern), rq_dashboard_api(p.callback), name=p.name) for p in get_api_urlpatterns()]
    return [*api, *get_admin_urlpatterns(view_wrapper=rq_dashboard_page)], "django_rq"


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/rq/", include(_rq_dashboard_urls())),
    path("admin/", admin.site.urls),
    path("webhooks/", include("jobs.webhooks")),
    path("", include("operations.urls")),  # /metrics and /healthz
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
