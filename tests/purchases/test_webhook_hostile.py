"""Hostile requests against POST /api/payments/confirmations: every one is answered 4xx with a JSON message, and
nothing is written (no Payment row, no outbox row).

Decided behaviour (see purchases/webhook.py):
- signature problems are 401 and are checked before the body is parsed (an unsigned body is never looked at);
- a body that is not a JSON object, or fields of the wrong type or range, are 400 with the reason;
- provider payment ids are opaque tokens of letters, digits and `_ . : -`: markup, quotes, spaces, control
  characters (a NUL byte used to be a 500: PostgreSQL cannot store it) are 400;
- unknown student or course is 422; the same provider id with other content is 409;
- a body over 64 KiB is 413 (also over Django's DATA_UPLOAD_MAX_MEMORY_SIZE, which used to be an HTML 400);
- any method but POST is 405 with an Allow header; a Content-Type other than application/json is 415 (a request
  without Content-Type is still read as JSON).
"""
import json
import time
import uuid

import pytest
from django.test import Client

from purchases.models import Payment, StudentCoursePurchase
from purchases.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature
from tests.factories import CourseFactory, StudentFactory
from workers.models import OutboxEvent

URL = "/api/payments/confirmations"
SECRET = "hostile-test-secret"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.PAYMENT_WEBHOOK_SECRET = SECRET
    settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300


@pytest.fixture
def client():
    # A server error must come back as the 500 a real client would see, not as a raised exception.
    return Client(raise_request_exception=False)


@pytest.fixture
def ids():
    return StudentFactory().pk, CourseFactory().pk


def good_body(ids, **changes) -> dict:
    student_id, course_id = ids
    body = {
        "provider_payment_id": f"pay_{uuid.uuid4().hex}",
        "student_id": student_id,
        "course_id": course_id,
        "amount": "49.00",
        "currency": "EUR",
        "confirmed_at": "2030-01-07T10:00:00+00:00",
    }
    body.update(changes)
    return body


def post_raw(client, raw: bytes, *, headers=None, content_type="application/json", secret=SECRET, timestamp=None):
    signed = sign(raw, secret, timestamp) if headers is None else headers
    return client.post(URL, data=raw, content_type=content_type, headers=signed)


def counts() -> tuple[int, int, int]:
    return Payment.objects.count(), OutboxEvent.objects.count(), StudentCoursePurchase.objects.count()


def assert_refused(response, status: int | tuple[int, ...]):
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert 400 <= response.status_code < 500
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    data = response.json()
    message = data.get("error") or data.get("errors")
    assert message, data  # a message saying what is wrong
    return data


# --- signatures ----------------------------------------------------------------------------------------------
def _sig(raw: bytes, ts: int, secret: str = SECRET) -> str:
    return signature(raw, secret, ts)


SIGNATURE_VARIANTS = {
    "no headers": lambda raw, now: {},
    "only timestamp": lambda raw, now: {TIMESTAMP_HEADER: str(now)},
    "only signature": lambda raw, now: {SIGNATURE_HEADER: _sig(raw, now)},
    "empty signature": lambda raw, now: {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: ""},
    "blank timestamp": lambda raw, now: {TIMESTAMP_HEADER: "   ", SIGNATURE_HEADER: _sig(raw, now)},
    "wrong secret": lambda raw, now: {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: _sig(raw, now, "not-the-secret")},
    "signature of another body": lambda raw, now: {TIMESTAMP_HEADER: str(now),
                                                   SIGNATURE_HEADER: _sig(raw + b" ", now)},
    "signature for another timestamp": lambda raw, now: {TIMESTAMP_HEADER: str(now),
                                                         SIGNATURE_HEADER: _sig(raw, now - 1)},
    "sha256= prefix": lambda raw, now: {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: "sha256=" + _sig(raw, now)},
    "truncated signature": lambda raw, now: {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: _sig(raw, now)[:32]},
    "signature not hex": lambda raw, now: {TIMESTAMP_HEADER: str(now), SIGNATURE_HEADER: "zz" * 32},
    "signature in base64": lambda raw, now: {TIMESTAMP_HEADER: str(now),
                                             SIGNATURE_HEADER: "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="},
    "timestamp not a number": lambda raw, now: {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: _sig(raw, now)},
    "negative timestamp": lambda raw, now: {TIMESTAMP_HEADER: "-1", SIGNATURE_HEADER: _sig(raw, -1)},
    "float timestamp": lambda raw, now: {TIMESTAMP_HEADER: f"{now}.5", SIGNATURE_HEADER: _sig(raw, now)},
    "13-digit timestamp": lambda raw, now: {TIMESTAMP_HEADER: "9" * 13, SIGNATURE_HEADER: _sig(raw, now)},
    "non-ASCII digits in timestamp": lambda raw, now: {TIMESTAMP_HEADER: "١٧٠٠٠٠٠٠٠٠",
                                                       SIGNATURE_HEADER: _sig(raw, now)},
    "stale by 301 s": lambda raw, now: sign(raw, SECRET, now - 301),
    "stale by a day": lambda raw, now: sign(raw, SECRET, now - 86_400),
    "epoch zero": lambda raw, now: sign(raw, SECRET, 0),
    "future by 301 s": lambda raw, now: sign(raw, SECRET, now + 301),
    "future by a year": lambda raw, now: sign(raw, SECRET, now + 365 * 86_400),
}


@pytest.mark.parametrize("variant", list(SIGNATURE_VARIANTS))
def test_bad_signatures_are_401_and_write_nothing(client, ids, variant):
    raw = json.dumps(good_body(ids)).encode()
    headers = SIGNATURE_VARIANTS[variant](raw, int(time.time()))
    before = counts()
    data = assert_refused(post_raw(client, raw, headers=headers), 401)
    assert "signature" in data["error"]
    assert counts() == before


def test_a_signed_request_replayed_with_a_changed_amount_is_401(client, ids):
    raw = json.dumps(good_body(ids)).encode()
    headers = sign(raw, SECRET)
    tampered = raw.replace(b'"49.00"', b'"0.01"')
    assert tampered != raw
    assert_refused(post_raw(client, tampered, headers=headers), 401)
    assert counts() == (0, 0, 0)


# --- bodies that are not a confirmation ----------------------------------------------------------------------
NOT_A_CONFIRMATION = {
    "empty body": b"",
    "whitespace": b"  \n ",
    "not JSON": b"{not json",
    "truncated JSON": b'{"provider_payment_id": "pay_1", "student_id": ',
    "not UTF-8": b"\xff\xfe\x00garbage",
    "latin-1 text": '{"provider_payment_id": "café"}'.encode("latin-1"),
    "UTF-8 BOM": b'\xef\xbb\xbf{"a": 1}',
    "JSON array": b"[1, 2]",
    "JSON string": b'"payment"',
    "JSON number": b"42",
    "JSON null": b"null",
    "JSON true": b"true",
    "deeply nested": b"[" * 20_000 + b"]" * 20_000,  # used to be a 500 (RecursionError)
    "deeply nested object": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "5000-digit integer": b'{"student_id": ' + b"7" * 5_000 + b"}",  # used to be a 500 (ValueError)
    "NaN literal": b'{"amount": NaN}',
    "XML": b"<payment><amount>49.00</amount></payment>",
    "form encoded": b"provider_payment_id=pay_1&student_id=1&amount=49.00",
}


@pytest.mark.parametrize("name", list(NOT_A_CONFIRMATION))
def test_bodies_that_are_not_a_confirmation_object_are_400(client, ids, name):
    before = counts()
    assert_refused(post_raw(client, NOT_A_CONFIRMATION[name]), 400)
    assert counts() == before


# --- wrong fields --------------------------------------------------------------------------------------------
FIELD_CASES = [
    # (field, value) -> 400 with an error for that field
    ("student_id", "7"),
    ("student_id", 7.0),
    ("student_id", True),
    ("student_id", None),
    ("student_id", [7]),
    ("student_id", {"id": 7}),
    ("student_id", 0),
    ("student_id", -7),
    ("student_id", 2**63),
    ("student_id", "7 OR 1=1"),
    ("course_id", "1; DROP TABLE payments; --"),
    ("course_id", 1.5),
    ("course_id", -1),
    ("amount", "-49.00"),
    ("amount", "-0.01"),
    ("amount", "0"),
    ("amount", "0.00"),
    ("amount", "1000000.01"),
    ("amount", "99999999999999999999.00"),
    ("amount", "1e3"),
    ("amount", "1E+1000000"),
    ("amount", "NaN"),
    ("amount", "Infinity"),
    ("amount", "49.001"),
    ("amount", "49,00"),
    ("amount", " 49.00"),
    ("amount", "0x31"),
    ("amount", 49.0),
    ("amount", 49),
    ("amount", None),
    ("currency", "eur"),
    ("currency", "EURO"),
    ("currency", "E"),
    ("currency", ""),
    ("currency", "<b>"),
    ("currency", 978),
    ("confirmed_at", "2030-01-07T10:00:00"),
    ("confirmed_at", "yesterday"),
    ("confirmed_at", ""),
    ("confirmed_at", None),
    ("provider_payment_id", ""),
    ("provider_payment_id", "x" * 129),
    ("provider_payment_id", "x" * 10_000),
    ("provider_payment_id", 12345),
    ("provider_payment_id", None),
    ("provider_payment_id", ["pay_1"]),
    # injection strings: refused as ids, never stored
    ("provider_payment_id", "'; DROP TABLE payments; --"),
    ("provider_payment_id", "pay_1' OR '1'='1"),
    ("provider_payment_id", "<script>alert(1)</script>"),
    ("provider_payment_id", '"><img src=x onerror=alert(1)>'),
    ("provider_payment_id", "pay\x00_1"),  # used to be a 500: PostgreSQL text cannot hold NUL
    ("provider_payment_id", "pay_\u202e1"),  # right-to-left override
    ("provider_payment_id", "pay 1"),
    ("provider_payment_id", "pay_1\n"),
    ("provider_payment_id", "pay_\U0001f4b8"),
    ("provider_payment_id", "${jndi:ldap://x/a}"),
    ("provider_payment_id", "../../etc/passwd"),
]


@pytest.mark.parametrize("field,value", FIELD_CASES, ids=[f"{f}={str(v)[:30]!r}" for f, v in FIELD_CASES])
def test_wrong_field_values_are_400_naming_the_field(client, ids, field, value):
    before = counts()
    data = assert_refused(post_raw(client, json.dumps(good_body(ids, **{field: value})).encode()), 400)
    assert field in data["errors"], data
    assert counts() == before


@pytest.mark.parametrize("field", ["provider_payment_id", "student_id", "course_id", "amount", "currency",
                                   "confirmed_at"])
def test_each_missing_field_is_400(client, ids, field):
    body = good_body(ids)
    del body[field]
    data = assert_refused(post_raw(client, json.dumps(body).encode()), 400)
    assert data["errors"] == {field: "Field required"}
    assert counts() == (0, 0, 0)


def test_a_lone_surrogate_in_the_id_is_400(client, ids):
    raw = json.dumps(good_body(ids, provider_payment_id="pay_\ud800")).encode()  # JSON escapes it: \ud800
    assert b"\\ud800" in raw
    assert_refused(post_raw(client, raw), 400)
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("which", ["student_id", "course_id"])
def test_unknown_student_or_course_is_422(client, ids, which):
    data = assert_refused(post_raw(client, json.dumps(good_body(ids, **{which: 9_000_000_000})).encode()), 422)
    assert data["error"] == f"unknown {which.removesuffix('_id')}"
    assert counts() == (0, 0, 0)


# --- size, method, content type ------------------------------------------------------------------------------
def test_a_body_over_64_kib_is_413_even_when_signed(client, ids):
    raw = json.dumps(good_body(ids, padding="x" * 70_000)).encode()
    data = assert_refused(post_raw(client, raw), 413)
    assert "bytes" in data["error"]
    assert counts() == (0, 0, 0)


def test_a_body_over_djangos_upload_limit_is_a_json_413(client, ids, settings):
    raw = b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)  # used to be Django's HTML 400
    assert_refused(post_raw(client, raw, headers=sign(b"", SECRET)), 413)  # from Content-Length, never read
    assert_refused(post_raw(client, raw, headers={}), 401)  # unsigned: refused before its length even counts
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "options"])
def test_other_methods_are_405_with_allow_post(client, ids, method):
    raw = json.dumps(good_body(ids)).encode()
    if method == "get":
        response = client.get(URL, headers=sign(b"", SECRET))
    else:
        response = getattr(client, method)(URL, data=raw, content_type="application/json", headers=sign(raw, SECRET))
    assert_refused(response, 405)
    assert response["Allow"] == "POST"
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=xyz", "application/xml", "text/html"])
def test_a_content_type_other_than_json_is_415_even_when_signed(client, ids, content_type):
    raw = json.dumps(good_body(ids)).encode()
    data = assert_refused(post_raw(client, raw, content_type=content_type), 415)
    assert "application/json" in data["error"]
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON", ""])
def test_json_with_a_charset_or_without_a_content_type_is_accepted(client, ids, content_type):
    """The control cases of the Content-Type check."""
    response = post_raw(client, json.dumps(good_body(ids)).encode(), content_type=content_type)
    assert response.status_code == 202, response.content
    assert counts() == (1, 1, 0)


# --- duplicates ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [
    {"amount": "0.01"}, {"amount": "1000000.00"}, {"currency": "USD"}, {"confirmed_at": "2031-01-01T00:00:00Z"},
    {"student_id": "other"}, {"course_id": "other"},
])
def test_the_same_provider_id_with_other_content_is_409_and_changes_nothing(client, ids, change):
    body = good_body(ids)
    first = post_raw(client, json.dumps(body).encode())
    assert first.status_code == 202, first.content
    payment_before = Payment.objects.values().get()
    if change.get("student_id") == "other":
        change = {"student_id": StudentFactory().pk}
    if change.get("course_id") == "other":
        change = {"course_id": CourseFactory().pk}
    data = assert_refused(post_raw(client, json.dumps({**body, **change}).encode()), 409)
    assert "different content" in data["error"]
    assert counts() == (1, 1, 0)
    assert Payment.objects.values().get() == payment_before


def test_an_interleaved_good_request_still_goes_through(client, ids):
    """A barrage of bad requests does not disturb a good one: one payment, one outbox row."""
    for raw in list(NOT_A_CONFIRMATION.values())[:5]:
        assert post_raw(client, raw).status_code == 400
    good = post_raw(client, json.dumps(good_body(ids)).encode())
    assert good.status_code == 202, good.content
    for raw in list(NOT_A_CONFIRMATION.values())[5:10]:
        assert post_raw(client, raw).status_code == 400
    assert counts() == (1, 1, 0)
