"""/metrics (Prometheus, bearer token) and /healthz (load balancers): no login, no session, no admin page."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from operations.health import health_checks
from operations.metrics import metrics_text


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics, for a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`.

    Without METRICS_TOKEN configured the endpoint does not exist (404): an installation that never set it up
    exposes nothing and advertises nothing. A missing or wrong token gets 401 with a Bearer challenge.
    """
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off: set METRICS_TOKEN.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis and a worker are fine, else 503; the body says only which check is failing."""
    results = health_checks()
    healthy = all(results.values())
    body = {
        "status": "ok" if healthy else "failing",
        "checks": {name: "ok" if passed else "failing" for name, passed in results.items()},
    }
    return JsonResponse(body, status=200 if healthy else 503)
