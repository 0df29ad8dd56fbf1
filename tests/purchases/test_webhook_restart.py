"""The webhook's hot path survives PostgreSQL dropping its connections (a restart, a failover): the stale
persistent connection is replaced at the start of the next request, which is answered 202, not 500.

The requests go through Django's WSGI handler in this thread, as under gunicorn (request_started runs the
health check; the test client would switch that off), and PostgreSQL really terminates the backend."""
import io
import json

import psycopg
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection

from purchases.models import Payment
from purchases.signing import sign
from tests.factories import CourseFactory, StudentFactory

SECRET = "test-webhook-secret"


def _confirm(student, course, n: int) -> int:
    data = json.dumps({"provider_payment_id": f"pay_restart_{n}", "student_id": student.pk, "course_id": course.pk,
                       "amount": str(course.price), "currency": course.currency,
                       "confirmed_at": "2030-01-07T10:00:00+00:00"}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/payments/confirmations", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data),
               "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(data)), "wsgi.errors": io.StringIO()}
    environ.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in sign(data, SECRET).items()})
    status = []
    response = WSGIHandler()(environ, lambda code, headers: status.append(code))
    response.close()  # request_finished, as the server does
    return int(status[0].split()[0])


@pytest.mark.django_db(transaction=True)
def test_the_webhook_answers_202_after_postgresql_dropped_its_connection(settings):
    settings.PAYMENT_WEBHOOK_SECRET = SECRET
    settings.ALLOWED_HOSTS = ["localhost"]
    student, course, *others = StudentFactory(), *CourseFactory.create_batch(4)
    assert _confirm(student, course, 1) == 202
    pid = connection.connection.info.backend_pid  # the persistent connection the next request would reuse
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True) as admin:
        # With a timeout, pg_terminate_backend returns once the backend has exited: the connection is then really
        # dropped (its FATAL message and the end of the stream are on our socket), as after a restart. Without it
        # the next request could race the signal and meet a backend that is still alive when it asks.
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone()[0]
    assert [_confirm(student, other, n) for n, other in enumerate(others[:3], start=2)] == [202, 202, 202]
    assert Payment.objects.count() == 4
