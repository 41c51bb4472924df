"""Routes of the emulated services (see sandbox/README.md), mounted under /sandbox/ when settings.SANDBOX_ENABLED.

- Business Central API v2.0: bc/v2.0/{tenant}/{environment}/api/v2.0/...
- Business Central custom API pages: bc/v2.0/{tenant}/{environment}/api/{publisher}/{group}/{version}/...
- Dataverse Web API:         dataverse/api/data/v9.2/...
- Entra ID token endpoint:   oauth/{tenant}/oauth2/v2.0/token
"""

from django.urls import path, re_path

from sandbox import views

app_name = "sandbox"

urlpatterns = [
    path("oauth/<str:tenant>/oauth2/v2.0/token", views.token, name="token"),
    path("bc/v2.0/<str:tenant>/<str:environment>/api/v2.0/", views.business_central, name="bc-root"),
    re_path(
        r"^bc/v2\.0/(?P<tenant>[^/]+)/(?P<environment>[^/]+)/api/v2\.0/(?P<rest>.+)$",
        views.business_central,
        name="bc",
    ),
    re_path(
        r"^bc/v2\.0/(?P<tenant>[^/]+)/(?P<environment>[^/]+)/api/(?P<route>[^/]+/[^/]+/v[0-9.]+|[^/]+/[^/]+/beta)/"
        r"(?P<rest>.*)$",
        views.business_central,
        name="bc-custom",
    ),
    path("dataverse/api/data/v9.2/", views.dataverse_api, name="dataverse-root"),
    re_path(r"^dataverse/api/data/v9\.2/(?P<rest>.+)$", views.dataverse_api, name="dataverse"),
]
