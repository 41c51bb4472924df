"""URLconf of `manage.py runsandbox`: the emulated services alone, at the same paths as in the web process."""

from django.urls import include, path

urlpatterns = [path("sandbox/", include("sandbox.urls"))]
