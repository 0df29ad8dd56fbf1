"""Hostile requests against the allocation API (POST /api/allocations and /api/allocations/batch): every one is
answered 4xx with a JSON message and writes nothing (no TrainerAllocation row).

Decided behaviour (see allocations/api.py):
- the bearer token is checked before the body is read: 401;
- a body that is not a JSON object, a missing, extra or mistyped field is 400 with the field's error (extra fields
  are refused, so a caller cannot choose a trainer, slot or status);
- unknown student or course is 422;
- a body over Django's DATA_UPLOAD_MAX_MEMORY_SIZE is 413 (used to be an HTML 400); hostile nesting and
  integers of more than 4300 digits are 400 (used to be a 500);
- any method but POST is 405 with an Allow header (used to be an empty body);
- the batch: its envelope errors (not a list, empty, over 500 items) are 400 and nothing runs; a batch of mixed
  items is 200 with one result per item, each bad item answered 4xx with its message and nothing written for it,
  the good items allocated (items are independent by design).
"""
import json

import pytest
from django.test import Client

from allocations.api import MAX_BATCH
from allocations.models import TrainerAllocation
from tests.factories import CourseFactory, StudentFactory, TrainerFactory, purchase_of

TOKEN = "hostile-allocation-token"
ONE = "/api/allocations"
BATCH = "/api/allocations/batch"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _token(settings):
    settings.ALLOCATION_API_TOKEN = TOKEN


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def course():
    course = CourseFactory()
    TrainerFactory(courses=[course], capacity=10)
    return course


@pytest.fixture
def student():
    return StudentFactory()


def post(client, url, raw: bytes | str, headers=None, content_type="application/json"):
    return client.post(url, data=raw, content_type=content_type, headers=AUTH if headers is None else headers)


def assert_refused(response, status: int):
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    data = response.json()
    assert data.get("error") or data.get("errors"), data
    return data


# --- the token -----------------------------------------------------------------------------------------------
BAD_AUTH = {
    "no header": {},
    "empty header": {"Authorization": ""},
    "scheme only": {"Authorization": "Bearer"},
    "empty token": {"Authorization": "Bearer "},
    "wrong token": {"Authorization": "Bearer not-the-token"},
    "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "token with a suffix": {"Authorization": f"Bearer {TOKEN}x"},
    "token twice": {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
    "basic scheme": {"Authorization": f"Basic {TOKEN}"},
    "no scheme": {"Authorization": TOKEN},
    "token in another header": {"X-Api-Token": TOKEN},
    "non-ASCII token": {"Authorization": "Bearer tökén"},
    "10 KB token": {"Authorization": "Bearer " + "t" * 10_000},
    "SQL in token": {"Authorization": "Bearer ' OR '1'='1"},
}


@pytest.mark.parametrize("url", [ONE, BATCH])
@pytest.mark.parametrize("name", list(BAD_AUTH))
def test_missing_or_wrong_token_is_401_before_the_body_is_read(client, course, student, url, name):
    body = {"student_id": student.pk, "course_id": course.pk}
    raw = json.dumps(body if url == ONE else {"requests": [body]})
    data = assert_refused(post(client, url, raw, headers=BAD_AUTH[name]), 401)
    assert data == {"error": "missing or wrong bearer token"}
    assert not TrainerAllocation.objects.exists()


def test_a_token_in_the_query_string_is_not_a_token(client, course, student):
    raw = json.dumps({"student_id": student.pk, "course_id": course.pk})
    assert_refused(post(client, f"{ONE}?token={TOKEN}", raw, headers={}), 401)
    assert not TrainerAllocation.objects.exists()


def test_an_unset_server_token_refuses_everyone(client, course, student, settings):
    settings.ALLOCATION_API_TOKEN = ""
    raw = json.dumps({"student_id": student.pk, "course_id": course.pk})
    assert_refused(post(client, ONE, raw, headers={"Authorization": "Bearer "}), 401)
    assert not TrainerAllocation.objects.exists()


# --- bodies that are not a request ---------------------------------------------------------------------------
NOT_JSON = {
    "empty": b"",
    "not JSON": b"{not json",
    "truncated": b'{"student_id": 1, "course_id":',
    "not UTF-8": b"\xff\xfe\x00",
    "deeply nested": b"[" * 20_000 + b"]" * 20_000,  # used to be a 500 (RecursionError)
    "5000-digit integer": b'{"student_id": ' + b"1" * 5_000 + b"}",  # used to be a 500 (ValueError)
    "NaN": b'{"student_id": NaN, "course_id": 1}',
    "form encoded": b"student_id=1&course_id=1",
}


@pytest.mark.parametrize("url", [ONE, BATCH])
@pytest.mark.parametrize("name", list(NOT_JSON))
def test_a_body_that_is_not_json_is_400(client, course, url, name):
    data = assert_refused(post(client, url, NOT_JSON[name]), 400)
    assert data == {"error": "body is not valid JSON"}
    assert not TrainerAllocation.objects.exists()


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"allocate"', b"42", b"null", b"true", b"[]"])
def test_json_that_is_not_an_object_is_400(client, course, raw):
    data = assert_refused(post(client, ONE, raw), 400)
    assert data["errors"] == {"body": "each request must be a JSON object"}
    assert not TrainerAllocation.objects.exists()


# --- fields --------------------------------------------------------------------------------------------------
FIELD_CASES = [
    ("student_id", "1"),
    ("student_id", 1.0),
    ("student_id", 1.5),
    ("student_id", True),
    ("student_id", None),
    ("student_id", []),
    ("student_id", {"id": 1}),
    ("student_id", 0),
    ("student_id", -1),
    ("student_id", 2**63),
    ("student_id", 2**64),  # past 64 bits: orjson reads a float, which the strict field refuses
    ("student_id", "1 OR 1=1"),
    ("student_id", "<script>alert(1)</script>"),
    ("course_id", "1; DROP TABLE trainer_allocations; --"),
    ("course_id", -5),
    ("course_id", 1e30),
    ("correlation_id", "not-a-uuid"),
    ("correlation_id", 42),
    ("correlation_id", "x" * 10_000),
    ("correlation_id", "\x00" * 36),
    ("correlation_id", ["6f1b1c43-3f7c-4c61-9c1e-2a4f0f0e7a11"]),
    ("trainer_id", 1),  # extra fields are refused: the caller does not choose the trainer
    ("slot_time", "08:00"),
    ("status", "active"),
    ("__proto__", {"admin": True}),
]


@pytest.mark.parametrize("field,value", FIELD_CASES, ids=[f"{f}={str(v)[:30]!r}" for f, v in FIELD_CASES])
def test_wrong_fields_are_400_naming_the_field(client, course, student, field, value):
    body = {"student_id": student.pk, "course_id": course.pk, field: value}
    data = assert_refused(post(client, ONE, json.dumps(body)), 400)
    assert field in data["errors"], data
    assert not TrainerAllocation.objects.exists()


@pytest.mark.parametrize("missing", ["student_id", "course_id", "purchase_id"])
def test_missing_fields_are_400(client, course, student, missing):
    body = {"student_id": student.pk, "course_id": course.pk, "purchase_id": 1}
    del body[missing]
    data = assert_refused(post(client, ONE, json.dumps(body)), 400)
    assert data["errors"] == {missing: "Field required"}
    assert not TrainerAllocation.objects.exists()


@pytest.mark.parametrize("which,error", [("student_id", "is for another student or course"),
                                         ("course_id", "is for another student or course"),
                                         ("purchase_id", "unknown purchase")])
def test_a_purchase_that_is_unknown_or_not_the_students_course_is_422(client, course, student, which, error):
    purchase = purchase_of(student.pk, course.pk)
    body = {"student_id": student.pk, "course_id": course.pk, "purchase_id": purchase.pk, which: 9_000_000_000}
    data = assert_refused(post(client, ONE, json.dumps(body)), 422)
    assert error in data["error"]
    assert not TrainerAllocation.objects.exists()


# --- size, method --------------------------------------------------------------------------------------------
def test_a_body_over_djangos_upload_limit_is_a_json_413(client, settings):
    raw = b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)  # used to be Django's HTML 400
    assert_refused(post(client, BATCH, raw), 413)
    assert not TrainerAllocation.objects.exists()


@pytest.mark.parametrize("url", [ONE, BATCH])
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_405_with_allow_post(client, course, student, url, method):
    if method == "get":
        response = client.get(url, headers=AUTH)
    else:
        raw = json.dumps({"student_id": student.pk, "course_id": course.pk})
        response = getattr(client, method)(url, data=raw, content_type="application/json", headers=AUTH)
    assert_refused(response, 405)
    assert response["Allow"] == "POST"
    assert not TrainerAllocation.objects.exists()


# --- the batch -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    {}, {"requests": None}, {"requests": []}, {"requests": "x"}, {"requests": {"student_id": 1}},
    {"requests": 7}, [{"student_id": 1, "course_id": 1}], {"request": [{"student_id": 1, "course_id": 1}]},
], ids=lambda body: json.dumps(body)[:40])
def test_batch_envelope_errors_are_400_and_nothing_runs(client, course, body):
    data = assert_refused(post(client, BATCH, json.dumps(body)), 400)
    assert "requests" in data["errors"]
    assert not TrainerAllocation.objects.exists()


def test_a_batch_over_the_limit_is_400_even_when_every_item_is_valid(client, course):
    students = StudentFactory.create_batch(3)
    items = [{"student_id": students[i % 3].pk, "course_id": course.pk} for i in range(MAX_BATCH + 1)]
    data = assert_refused(post(client, BATCH, json.dumps({"requests": items})), 400)
    assert str(MAX_BATCH) in data["errors"]["requests"]
    assert not TrainerAllocation.objects.exists()


def test_a_batch_of_mixed_items_answers_each_bad_item_4xx_and_writes_only_the_good_ones(client, course):
    good_one, good_two = StudentFactory(), StudentFactory()
    bad_items = [
        7,
        "student",
        None,
        [],
        {},
        {"student_id": "1", "course_id": course.pk},
        {"student_id": good_one.pk},
        {"student_id": good_one.pk, "course_id": course.pk, "trainer_id": 1},
        {"student_id": -1, "course_id": course.pk},
        {"student_id": "'; DROP TABLE trainer_allocations; --", "course_id": course.pk},
        {"student_id": 9_000_000_000, "course_id": course.pk},
        {"student_id": good_two.pk, "course_id": 9_000_000_000},
        {"student_id": good_two.pk, "course_id": course.pk, "correlation_id": "<script>"},
    ]
    items = [{"student_id": good_one.pk, "course_id": course.pk, "purchase_id": purchase_of(good_one.pk, course.pk).pk},
             *bad_items,
             {"student_id": good_two.pk, "course_id": course.pk, "purchase_id": purchase_of(good_two.pk, course.pk).pk}]
    response = post(client, BATCH, json.dumps({"requests": items}))
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == len(items)
    assert [r["status"] for r in (results[0], results[-1])] == [201, 201]
    for item, result in zip(bad_items, results[1:-1]):
        assert 400 <= result["status"] < 500, (item, result)
        assert result["body"].get("error") or result["body"].get("errors"), (item, result)
    assert sorted(TrainerAllocation.objects.values_list("student_id", flat=True)) == sorted([good_one.pk, good_two.pk])
