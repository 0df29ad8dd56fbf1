"""The web app's WSGI handler (enrollment/handler.py): the payment provider's webhooks are served with a short
middleware list, and answer exactly as the site's handler (the whole MIDDLEWARE) would.

These tests call the WSGI applications themselves, with the real request signals (so the database connection is
handled as under gunicorn): hence transactional tests.
"""
import json
import sys
from itertools import count

import pytest
from django.core.checks import run_checks
from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory
from prometheus_client import REGISTRY

from enrollment.handler import SiteHandler
from purchases.models import Payment
from purchases.signing import sign
from tests.factories import CourseFactory, StudentFactory

CONFIRMATIONS = "/api/payments/confirmations"
REFUNDS = "/api/payments/refunds"
SECRET = "test-webhook-secret"
# What differs between two answers by design: the new rows' ids.
VARYING = ("payment_id", "correlation_id", "refund_id")
ids = count(1)


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.PAYMENT_WEBHOOK_SECRET = SECRET
    settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300


class Answer:
    def __init__(self, app, method, path, body=b"", headers=None, **extra):
        factory = RequestFactory(**extra)
        environ = factory.generic(method, path, data=body, content_type="application/json",
                                  headers=headers or {}).environ
        environ.setdefault("wsgi.errors", sys.stderr)
        started = {}
        chunks = app(environ, lambda status, headers, exc_info=None: started.update(status=status, headers=headers))
        try:
            self.body = b"".join(chunks)
        finally:
            chunks.close()  # sends request_finished, as the WSGI server does
        self.status = started["status"]
        self.headers = dict(started["headers"])

    def comparable(self):
        data = json.loads(self.body) if self.headers.get("Content-Type") == "application/json" else self.body
        if isinstance(data, dict):
            data = {key: ("<id>" if key in VARYING else value) for key, value in data.items()}
        return self.status, self.headers, data


def confirmation(student, course, **overrides):
    return {"provider_payment_id": f"pay_handler_{next(ids)}", "student_id": student.pk, "course_id": course.pk,
            "amount": "49.00", "currency": "EUR", "confirmed_at": "2030-01-07T10:00:00+00:00", **overrides}


def signed(body: dict, secret: str = SECRET) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    return raw, sign(raw, secret)


@pytest.fixture
def handlers():
    return SiteHandler(), WSGIHandler()


@pytest.mark.django_db(transaction=True)
class TestDirectRoutesAnswerAsTheSite:
    def both(self, handlers, method, path, make_body=None, *, secret=SECRET, headers=None, **extra):
        """The same request, through the site's handler and through Django's with the whole middleware list
        (a new body for each when `make_body` is given: the first one's payment exists by then)."""
        answers = []
        for app in handlers:
            raw, signature = signed(make_body(), secret) if make_body else (b"", {})
            answers.append(Answer(app, method, path, raw, {**signature, **(headers or {})}, **extra))
        return answers

    def test_an_accepted_confirmation(self, handlers):
        student, course = StudentFactory(), CourseFactory()
        direct, site = self.both(handlers, "POST", CONFIRMATIONS, lambda: confirmation(student, course))
        assert direct.status == "202 Accepted"
        assert direct.comparable() == site.comparable()
        assert {"X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options", "Content-Length"} <= set(direct.headers)
        assert Payment.objects.count() == 2

    def test_the_refusals(self, handlers):
        student, course = StudentFactory(), CourseFactory()
        cases = [
            ("GET", CONFIRMATIONS, None, {}),  # 405
            ("POST", CONFIRMATIONS, lambda: confirmation(student, course), {"secret": "another-secret"}),  # 401
            ("POST", CONFIRMATIONS, lambda: confirmation(student, course, amount=49), {}),  # 400
            ("POST", CONFIRMATIONS, lambda: confirmation(student, course, student_id=10**9), {}),  # 422
            ("POST", CONFIRMATIONS, lambda: confirmation(student, course), {"SERVER_NAME": "evil.example"}),  # 400
            ("POST", REFUNDS, lambda: {"provider_refund_id": "re_1", "provider_payment_id": "pay_unknown",
                                       "amount": "49.00", "currency": "EUR", "reason": "refund",
                                       "refunded_at": "2030-01-08T10:00:00+00:00"}, {}),  # 404 or 202: as the site
        ]
        statuses = []
        for method, path, make_body, extra in cases:
            direct, site = self.both(handlers, method, path, make_body, **extra)
            assert direct.comparable() == site.comparable(), (method, path, extra)
            statuses.append(direct.status[:3])
        assert statuses[:5] == ["405", "401", "400", "422", "400"]

    def test_a_repeat_and_a_conflict(self, handlers):
        student, course = StudentFactory(), CourseFactory()
        body = confirmation(student, course)
        Answer(handlers[0], "POST", CONFIRMATIONS, *signed(body))
        for again, status in ((body, "200 OK"), ({**body, "amount": "50.00"}, "409 Conflict")):
            direct, site = (Answer(app, "POST", CONFIRMATIONS, *signed(again)) for app in handlers)
            assert direct.status == status
            assert direct.comparable() == site.comparable()

    def test_an_exception_in_the_view_is_the_sites_500(self, handlers, monkeypatch):
        import purchases.webhook

        def fail(*args):
            raise RuntimeError("the database said no")

        monkeypatch.setattr(purchases.webhook, "_accept", fail)
        student, course = StudentFactory(), CourseFactory()
        direct, site = self.both(handlers, "POST", CONFIRMATIONS, lambda: confirmation(student, course))
        assert direct.status.startswith("500")
        assert direct.comparable() == site.comparable()


@pytest.mark.django_db(transaction=True)
def test_only_the_direct_routes_skip_the_site_middleware(settings):
    """A middleware of MIDDLEWARE that DIRECT_MIDDLEWARE leaves out runs on the site's other paths only."""
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.enrollment.marker.MarkerMiddleware"]
    app = SiteHandler()
    student, course = StudentFactory(), CourseFactory()
    direct = Answer(app, "POST", CONFIRMATIONS, *signed(confirmation(student, course)))
    other = Answer(app, "GET", "/healthz")
    assert direct.status == "202 Accepted" and "X-Marker" not in direct.headers
    assert other.headers.get("X-Marker") == "ran"


@pytest.mark.django_db(transaction=True)
def test_a_direct_route_is_counted_by_its_route_name():
    labels = {"route": "payment-confirmation", "method": "POST", "status": "202"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    student, course = StudentFactory(), CourseFactory()
    Answer(SiteHandler(), "POST", CONFIRMATIONS, *signed(confirmation(student, course)))
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1


def test_the_direct_routes_are_the_provider_webhooks():
    assert set(SiteHandler().direct.routes) == {CONFIRMATIONS, REFUNDS}


def test_direct_middleware_may_only_leave_site_middleware_out(settings):
    settings.DIRECT_MIDDLEWARE = list(reversed(settings.DIRECT_MIDDLEWARE))
    settings.DIRECT_ROUTES = [*settings.DIRECT_ROUTES, "no-such-route"]
    ids_ = {message.id for message in run_checks(tags=["urls"])}
    assert {"enrollment.E001", "enrollment.E002"} <= ids_
