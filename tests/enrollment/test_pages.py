"""The cached student pages and their invalidation, on the real Redis; Redis down is simulated with a closed port."""
import datetime
import socket
import uuid

import pytest
from django.utils import timezone
from django_redis import get_redis_connection

from enrollment.cache_invalidation import (
    CACHE_FAILURES,
    STAGE,
    handle_cache_event,
    home_key,
    learning_key,
)
from enrollment.events import (
    PURCHASE_CONFIRMED,
    PURCHASE_CREATED,
    SESSIONS_SCHEDULED,
    TRAINER_ALLOCATED,
)
from sessions_sched.scheduler import ensure_window
from tests.factories import AllocationFactory, PurchaseFactory, StudentFactory
from workers.envelope import build_event
from workers.stage import DeadLetterPolicy

pytestmark = [pytest.mark.django_db, pytest.mark.redis]  # the pages are cached in Redis


@pytest.fixture
def redis_down(settings):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        }
    }


@pytest.fixture
def client(admin_client):
    """The page reads of this module are staff's (a superuser): who may read is tests/security's subject."""
    return admin_client


def enrolled_student():
    purchase = PurchaseFactory()
    allocation = AllocationFactory(student=purchase.student, course=purchase.course)
    ensure_window(allocation)
    return purchase, allocation


def event_for(event_type, student_id, **payload):
    base = {
        PURCHASE_CREATED: {"purchase_id": 1, "payment_id": 1, "course_id": 1},
        TRAINER_ALLOCATED: {"allocation_id": 1, "trainer_id": 1, "course_id": 1},
        SESSIONS_SCHEDULED: {"allocation_id": 1, "course_id": 1, "sessions_created": 7, "future_sessions": 7},
        PURCHASE_CONFIRMED: {"payment_id": 1, "provider_payment_id": "p", "course_id": 1, "amount": "1.00",
                             "currency": "EUR"},
    }[event_type]
    return build_event(event_type, {**base, "student_id": student_id, **payload}, correlation_id=uuid.uuid4())


def test_learning_page_shows_purchases_trainer_and_upcoming_sessions_and_is_cached(client, redis_cache):
    purchase, allocation = enrolled_student()
    response = client.get(f"/api/students/{purchase.student_id}/learning")
    assert response.status_code == 200
    page = response.json()
    [item] = page["purchases"]
    assert item["course"] == {"id": purchase.course_id, "title": purchase.course.title, "time_zone": "Europe/Berlin"}
    assert item["allocation"]["trainer"] == {"id": allocation.trainer_id, "name": allocation.trainer.name}
    assert item["allocation"]["slot_time"] == "09:00"
    assert len(item["upcoming_sessions"]) == 7
    assert all(s["time"] == "09:00" for s in item["upcoming_sessions"])
    assert redis_cache.get(learning_key(purchase.student_id)) == page
    # The Redis key carries django-redis's version prefix.
    assert get_redis_connection("default").exists(f":1:student:learning:{purchase.student_id}")


def test_home_page_summarizes_and_is_served_from_the_cache_until_invalidated(client, redis_cache):
    purchase, allocation = enrolled_student()
    url = f"/api/students/{purchase.student_id}/home"
    page = client.get(url).json()
    assert (page["active_courses"], page["courses_with_trainer"], page["upcoming_sessions"]) == (1, 1, 7)
    nxt = page["next_session"]
    assert nxt["trainer"]["id"] == allocation.trainer_id and nxt["time"] == "09:00"
    assert datetime.datetime.fromisoformat(nxt["starts_at"]) > timezone.now()
    assert redis_cache.get(home_key(purchase.student_id)) == page

    PurchaseFactory(payment__student=purchase.student)  # a second course, not on the cached page yet
    assert client.get(url).json()["active_courses"] == 1
    handle_cache_event(event_for(PURCHASE_CREATED, purchase.student_id))
    assert client.get(url).json()["active_courses"] == 2


def test_a_student_without_anything_yet(client, redis_cache):
    student = StudentFactory()
    assert client.get(f"/api/students/{student.pk}/learning").json()["purchases"] == []
    home = client.get(f"/api/students/{student.pk}/home").json()
    assert (home["active_courses"], home["next_session"]) == (0, None)


def test_unknown_student_is_404_and_not_cached(client, redis_cache):
    for page in ("home", "learning"):
        response = client.get(f"/api/students/999999999/{page}")
        assert (response.status_code, response.json()) == (404, {"error": "not found"})
    assert redis_cache.get(home_key(999999999)) is None and redis_cache.get(learning_key(999999999)) is None


@pytest.mark.parametrize("event_type", [PURCHASE_CREATED, TRAINER_ALLOCATED, SESSIONS_SCHEDULED])
def test_invalidating_events_delete_both_keys(redis_cache, event_type):
    student = StudentFactory()
    other = StudentFactory()
    for sid in (student.pk, other.pk):
        redis_cache.set(home_key(sid), {"x": 1})
        redis_cache.set(learning_key(sid), {"x": 1})
    handle_cache_event(event_for(event_type, student.pk))
    assert redis_cache.get(home_key(student.pk)) is None and redis_cache.get(learning_key(student.pk)) is None
    assert redis_cache.get(home_key(other.pk)) == {"x": 1}


def test_other_events_do_not_invalidate(redis_cache):
    student = StudentFactory()
    redis_cache.set(home_key(student.pk), {"x": 1})
    handle_cache_event(event_for(PURCHASE_CONFIRMED, student.pk))
    assert redis_cache.get(home_key(student.pk)) == {"x": 1}


def test_redis_down_during_invalidation_is_logged_and_counted_not_raised(redis_down, caplog):
    before = CACHE_FAILURES._value.get()
    handle_cache_event(event_for(TRAINER_ALLOCATED, 42))
    assert CACHE_FAILURES._value.get() == before + 1
    assert "cache invalidation failed" in caplog.text


def test_redis_down_pages_are_served_uncached(client, redis_down, caplog):
    purchase, _ = enrolled_student()
    for page in ("home", "learning"):
        assert client.get(f"/api/students/{purchase.student_id}/{page}").status_code == 200
    assert caplog.text.count("page cache unavailable, serving uncached") == 2


def test_stage():
    assert (STAGE.name, STAGE.group_id, STAGE.retry.max_attempts, STAGE.record_processed, STAGE.dead_letters) == (
        "cache", "cache-invalidation-workers", 1, False, DeadLetterPolicy.LOG_AND_COUNT)
    assert STAGE.topics == ("purchase-created", "trainer-allocated", "sessions-scheduled", "purchase-cancelled",
                            "allocation-released")
