"""Every admin page, custom admin view and django-rq dashboard page sends an anonymous visitor to the login page."""

import re

import pytest
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import UUIDConverter
from django.urls.exceptions import NoReverseMatch
from django.urls.resolvers import RoutePattern

PUBLIC_ADMIN_URL_NAMES = {"admin:login"}
# Django's admin sends an anonymous visitor of the logout page to the index, which then asks for a login.
REDIRECTS_TO_INDEX = {"/admin/logout/"}
# Values that fit the URL parameters the admin and django-rq use; the page need not exist, only be protected.
SAMPLE_VALUES = {
    "object_id": "1",
    "content_type_id": 1,
    "queue_index": 0,
    "job_id": "00000000-0000-0000-0000-000000000000",
    "key": "x",
    "token": "x",
    "route": "contoso/projects/v1.0",  # the sandbox's custom API page route (not under /admin/, but reversed)
}


def _parameters(pattern: URLPattern) -> dict:
    """The pattern's parameter names, each with its converter (None for regex groups)."""
    if isinstance(pattern.pattern, RoutePattern):
        return dict(pattern.pattern.converters)
    return dict.fromkeys(re.compile(str(pattern.pattern)).groupindex)


def _sample(name: str, converter=None):
    if name == "app_label":
        return next(iter(admin.site._registry))._meta.app_label
    if isinstance(converter, UUIDConverter):
        return "00000000-0000-0000-0000-000000000000"
    return SAMPLE_VALUES.get(name, "1")


def _named_patterns(resolver: URLResolver, namespace: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if entry.namespace else namespace
            yield from _named_patterns(entry, inner.strip(":"))
        elif entry.name:
            yield (f"{namespace}:{entry.name}" if namespace else entry.name), entry


def _unnamed_routes(resolver: URLResolver, prefix: str = "/"):
    """Paths of the unnamed `path()` routes (such as the admin's <object_id>/ redirects), with sample values."""
    for entry in resolver.url_patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            if not route.startswith("^"):
                yield from _unnamed_routes(entry, prefix + route)
        elif not entry.name and isinstance(entry.pattern, RoutePattern):
            yield prefix + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(_sample(m.group(1))), route)


# Named URLs the walk could not make concrete: the coverage test fails on any, so no admin page is skipped silently.
UNREACHED = []


def admin_urls() -> list[str]:
    """Every named URL under /admin/ (the admin site, each ModelAdmin's get_urls(), django-rq), made concrete."""
    urls = set()
    UNREACHED.clear()
    for name, pattern in _named_patterns(get_resolver()):
        if name in PUBLIC_ADMIN_URL_NAMES:
            continue
        kwargs = {key: _sample(key, converter) for key, converter in _parameters(pattern).items()}
        try:
            url = reverse(name, kwargs=kwargs)
        except NoReverseMatch:
            UNREACHED.append(name)
            continue
        if url.startswith("/admin/"):
            urls.add(url)
    urls.update(url for url in _unnamed_routes(get_resolver()) if url.startswith("/admin/"))
    return sorted(urls)


def registered_admin_pages() -> list[str]:
    pages = []
    for model in admin.site._registry:
        info = model._meta.app_label, model._meta.model_name
        pages += [reverse("admin:{}_{}_changelist".format(*info)), reverse("admin:{}_{}_add".format(*info))]
    return pages


def test_the_walk_covers_every_registered_model_and_the_rq_dashboard():
    urls = admin_urls()

    assert set(registered_admin_pages()) <= set(urls)
    assert "/admin/" in urls
    assert "/admin/rq/" in urls
    assert any(url.startswith("/admin/rq/queues/") for url in urls)
    assert reverse("admin:login") not in urls
    assert "/admin/connectors/connection/1/" in urls  # an unnamed route: the redirect to the change page
    assert UNREACHED == []


def _is_json_api(url: str) -> bool:
    # django-rq's stats.json, and its Prometheus metrics (present since prometheus_client is installed), are for
    # monitoring tools: they answer 401 (no data) instead of a login page.
    return ".json/" in url or url.rstrip("/").endswith("/metrics")


@pytest.mark.django_db
@pytest.mark.parametrize("url", [url for url in admin_urls() if not _is_json_api(url)])
def test_an_anonymous_visitor_is_sent_to_the_login_page(client, url):
    response = client.get(url)

    assert response.status_code == 302, f"{url} answered {response.status_code} to an anonymous visitor"
    expected = reverse("admin:index") if url in REDIRECTS_TO_INDEX else reverse("admin:login") + "?next="
    assert response["Location"].startswith(expected), response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", [url for url in admin_urls() if _is_json_api(url)])
def test_an_anonymous_monitoring_call_gets_no_data(client, url):
    response = client.get(url)

    assert response.status_code in (401, 403)
    assert "queues" not in response.json()


@pytest.mark.django_db
def test_a_logged_in_administrator_sees_the_admin_and_the_rq_dashboard(admin_client):
    assert admin_client.get("/admin/").status_code == 200
    assert admin_client.get("/admin/rq/").status_code == 200
