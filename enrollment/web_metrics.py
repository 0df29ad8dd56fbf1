"""Prometheus metrics of the web app: a request counter and latency histogram per route, and `/metrics`.

Who may read /metrics: a request from loopback that did not come through a proxy (no X-Forwarded-For /
Forwarded header: behind a reverse proxy on the same host every request looks like loopback), or any request
with `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set. Everyone else gets 403.

Under gunicorn with several worker processes each has its own counters; set PROMETHEUS_MULTIPROC_DIR (an empty
directory, see settings/gunicorn.py) and /metrics adds up every process's values.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["route", "method", "status"])
HTTP_SECONDS = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request (in the Django app)", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
UNMATCHED = "unmatched"  # 404s of unknown paths share one label: no label per scanned URL


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None and match.view_name else UNMATCHED


class RequestMetricsMiddleware:
    """Counts and times every request by its route name (bounded label values, unlike the path)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        route = _route(request)
        HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        return response


def _from_local_process(request: HttpRequest) -> bool:
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _has_token(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def registry() -> CollectorRegistry:
    """The default registry, or one that aggregates every gunicorn worker in multiprocess mode."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    aggregated = CollectorRegistry()
    multiprocess.MultiProcessCollector(aggregated)
    return aggregated


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not (_has_token(request) or _from_local_process(request)):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
