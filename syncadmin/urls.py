from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from jobs.permissions import rq_dashboard_api, rq_dashboard_page
from operations.dashboard_view import dashboard_index

admin.site.site_header = "syncadmin"
admin.site.site_title = "syncadmin"
admin.site.index_title = "Business Central and Dataverse synchronization"
# The model list beside every page takes a quarter of a 1,366 px screen, which the job list's counts and the field
# grid need; the same list is on the start page and in the breadcrumbs.
admin.site.enable_nav_sidebar = False
# The start page is the health dashboard, with the model list below it (and the RQ dashboard's link for those who
# may use it).
admin.site.index_template = "admin/operations/dashboard.html"


def _rq_dashboard_urls():
    """django-rq's pages, each behind the dashboard permission (django-rq itself lets in any staff user)."""
    api = [re_path(str(p.pattern), rq_dashboard_api(p.callback), name=p.name) for p in get_api_urlpatterns()]
    return [*api, *get_admin_urlpatterns(view_wrapper=rq_dashboard_page)], "django_rq"


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/rq/", include(_rq_dashboard_urls())),
    # The start page: the dashboard, then the list of models (before the admin's own index, which it extends).
    path("admin/", admin.site.admin_view(dashboard_index), name="dashboard"),
    path("admin/", admin.site.urls),
    path("webhooks/", include("jobs.webhooks")),
    path("", include("operations.urls")),  # /metrics and /healthz
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
