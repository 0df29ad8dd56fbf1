"""The web app's WSGI handler: Django's, with a short middleware list for the payment provider's webhooks.

The confirmation webhook is the web app's hot path: every purchase comes through it, at hundreds of requests per
second at peak. Nothing on it uses what most of the site's middleware is there for: it has no session, no logged-in
user, no CSRF token (its signature authenticates it), no messages and no static files. Yet on a machine that does
other work between two requests (every real one) each request runs with cold caches, and the whole middleware list
and the URL resolution were about a sixth of the web process's CPU per confirmation (measured in one process,
requests 5 ms apart as at 200 req/s, interleaved blocks: 1.68 ms with the site's handler, 1.39 with this one;
docs/benchmarks.md has the figures under load).

So the routes named in settings.DIRECT_ROUTES (URL names) are served by a second Django handler: their views are
resolved once at start-up, and settings.DIRECT_MIDDLEWARE is the middleware around them (the request metrics, the
security headers, the host check and Content-Length, X-Frame-Options: a subsequence of MIDDLEWARE, which a system
check holds it to). Every other path goes to Django's handler with the whole MIDDLEWARE. Both are Django's own
WSGIHandler: the request signals (the database connections' health and age), the conversion of an exception into
a 500 answer, the logging of 4xx and 5xx answers are the same on both.

Django's test client goes through the site's handler; tests/enrollment/test_handler.py holds the two to the same
answers.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest
from django.urls import ResolverMatch, get_resolver, resolve
from django.utils.module_loading import import_string


def direct_routes() -> dict[str, ResolverMatch]:
    """path -> its resolved view, for each URL name of settings.DIRECT_ROUTES (views without URL arguments)."""
    routes = {}
    for name in settings.DIRECT_ROUTES:
        path = "/" + get_resolver().reverse(name)
        routes[path] = resolve(path)
    return routes


class DirectRoutesHandler(WSGIHandler):
    """Django's WSGI handler for the paths of `routes` only, with settings.DIRECT_MIDDLEWARE around their views."""

    def __init__(self, routes: dict[str, ResolverMatch]) -> None:
        self.routes = routes
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        """BaseHandler.load_middleware over settings.DIRECT_MIDDLEWARE instead of MIDDLEWARE, for synchronous
        middleware (Django's and ours all are)."""
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(settings.DIRECT_MIDDLEWARE):
            factory = import_string(path)
            if not getattr(factory, "sync_capable", True):
                raise ImproperlyConfigured(f"DIRECT_MIDDLEWARE: {path} cannot run synchronously")
            try:
                middleware = factory(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        match = self.routes[request.path_info]
        request.resolver_match = match
        return match


class SiteHandler(WSGIHandler):
    """The WSGI application (settings/wsgi.py): the direct routes to their handler, everything else to Django's."""

    def __init__(self) -> None:
        super().__init__()
        self.direct = DirectRoutesHandler(direct_routes())

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.direct.routes:
            return self.direct(environ, start_response)
        return super().__call__(environ, start_response)
