"""The whole pipeline through the real broker: web (gunicorn), relay, every consumer, as in the Procfile."""
import datetime
import json
import uuid
import zoneinfo

import pytest
import requests
from django.conf import settings
from django.core.cache import cache

from allocations.models import TrainerAllocation
from enrollment.access import issue_token
from purchases.models import Payment, StudentCoursePurchase
from purchases.signing import sign
from sessions_sched.models import TrainingSession
from tests.e2e.harness import (
    group_lag,
    rewind_groups_to_start,
    stage_groups,
    wait_until,
)
from tests.factories import CourseFactory, StudentFactory, TrainerFactory
from workers.models import OutboxEvent, ProcessedEvent

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
CONSUMERS = ["relay", "purchases", "allocations", "sessions", "cache", "dead_letters"]




def _post_payment(pipeline, body: dict) -> requests.Response:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **sign(raw, settings.PAYMENT_WEBHOOK_SECRET)}
    return requests.post(pipeline.web_url + "/api/payments/confirmations", data=raw, headers=headers, timeout=10)


def _snapshot() -> dict:
    return {
        "payments": sorted(Payment.objects.values_list("id", "provider_payment_id")),
        "purchases": sorted(StudentCoursePurchase.objects.values_list("id", "student_id", "course_id")),
        "allocations": sorted(TrainerAllocation.objects.values_list("id", "trainer_id", "slot_time")),
        "sessions": sorted(TrainingSession.objects.values_list("id", "allocation_id", "starts_at")),
        "outbox": sorted(OutboxEvent.objects.values_list("event_id", flat=True)),
        "processed": sorted(ProcessedEvent.objects.values_list("consumer", "event_id")),
    }


def test_a_signed_payment_becomes_purchase_trainer_and_seven_sessions_and_replays_change_nothing(pipeline):
    course = CourseFactory(time_zone="America/New_York")
    trainer = TrainerFactory(capacity=3, courses=[course])
    student = StudentFactory()
    learning_url = f"{pipeline.web_url}/api/students/{student.pk}/learning"

    as_student = {"Authorization": f"Bearer {issue_token(student.pk)}"}  # the student's own token
    before = requests.get(learning_url, headers=as_student, timeout=10).json()
    assert before["purchases"] == []
    assert cache.get(f"student:learning:{student.pk}") is not None  # the page is now cached

    body = {"provider_payment_id": f"pay_{uuid.uuid4().hex}", "student_id": student.pk, "course_id": course.pk,
            "amount": "49.00", "currency": "EUR", "confirmed_at": datetime.datetime.now(datetime.UTC).isoformat()}
    accepted = _post_payment(pipeline, body)
    assert accepted.status_code == 202, accepted.text

    def enrolled():
        page = requests.get(learning_url, headers=as_student, timeout=10).json()
        items = page["purchases"]
        if items and items[0]["allocation"] and len(items[0]["upcoming_sessions"]) == 7:
            return page
        return None

    page = wait_until(enrolled, timeout=30, message="the learning page never showed the enrollment")
    [item] = page["purchases"]
    assert item["course"]["id"] == course.pk
    assert item["allocation"]["trainer"]["id"] == trainer.pk
    zone = zoneinfo.ZoneInfo(course.time_zone)
    now_local = datetime.datetime.now(zone)
    for session in item["upcoming_sessions"]:
        starts = datetime.datetime.fromisoformat(session["starts_at"]).astimezone(zone)
        assert starts > now_local and starts.weekday() < 5
        assert session["time"] == item["allocation"]["slot_time"]

    # the same confirmation again: 200, same payment, nothing new emitted
    outbox_before = OutboxEvent.objects.count()
    again = _post_payment(pipeline, body)
    assert again.status_code == 200 and again.json()["payment_id"] == accepted.json()["payment_id"]
    wait_until(lambda: all(group_lag(g, t) == 0 for g, t in stage_groups().values()), 30, "groups caught up")
    assert OutboxEvent.objects.count() == outbox_before

    # replay every topic from offset 0 for every group: nothing changes in the database
    wait_until(lambda: not OutboxEvent.objects.unsent().exists(), 15, "outbox drained")
    before_replay = _snapshot()
    pipeline.stop(*CONSUMERS)
    rewind_groups_to_start()
    assert all(group_lag(g, t) > 0 for g, t in stage_groups().values())
    pipeline.start(*CONSUMERS)
    wait_until(lambda: all(group_lag(g, t) == 0 for g, t in stage_groups().values()), 60, "replay consumed")
    assert _snapshot() == before_replay
    assert TrainingSession.objects.count() == 7
