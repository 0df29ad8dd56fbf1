"""An operator's story, end to end: no trainer has room, the allocation is dead-lettered after its retries, the
operator adds a trainer in the admin and replays the dead letter there, and the enrollment completes."""
import datetime
import json
import re
import uuid

import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User

from allocations.models import Trainer, TrainerAllocation
from purchases.signing import sign
from sessions_sched.models import TrainingSession
from tests.e2e.harness import wait_until
from tests.factories import CourseFactory, StudentFactory
from workers.models import DeadLetter, DeadLetterAction

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]




def _csrf(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, page.text[:500]
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


def _admin_post(session, base, path, data):
    token = _csrf(session, base + path)
    return session.post(base + path, data={**data, "csrfmiddlewaretoken": token}, headers={"Referer": base + path},
                        timeout=30)


def test_no_trainer_dead_letter_then_add_trainer_in_admin_and_replay(pipeline):
    course = CourseFactory(title="Advanced Kafka", time_zone="Europe/Berlin")
    student = StudentFactory()
    operator = User.objects.create_superuser("operator", "op@example.test")
    operator.password = make_password("s3cret-pass", hasher="pbkdf2_sha256")  # what the web process checks
    operator.save()

    body = json.dumps({"provider_payment_id": f"pay_{uuid.uuid4().hex}", "student_id": student.pk,
                       "course_id": course.pk, "amount": "49.00", "currency": "EUR",
                       "confirmed_at": datetime.datetime.now(datetime.UTC).isoformat()}).encode()
    headers = {"Content-Type": "application/json", **sign(body, settings.PAYMENT_WEBHOOK_SECRET)}
    assert requests.post(pipeline.web_url + "/api/payments/confirmations", data=body, headers=headers,
                         timeout=10).status_code == 202

    # 5 attempts answered 409 "no trainer with capacity", then the dead letter is stored for review
    dead = wait_until(lambda: DeadLetter.objects.filter(stage="allocations").first(), 60, "dead letter stored")
    assert dead.attempts == 5 and "409" in dead.error_message and dead.status == "new"
    assert not TrainerAllocation.objects.exists()

    admin = requests.Session()
    base = pipeline.web_url
    login = _admin_post(admin, base, "/admin/login/?next=/admin/",
                        {"username": "operator", "password": "s3cret-pass", "next": "/admin/"})
    assert login.status_code == 200 and "Log out" in login.text
    listing = admin.get(f"{base}/admin/workers/deadletter/?stage=allocations", timeout=10).text
    assert str(dead.correlation_id) in listing or f"/admin/workers/deadletter/{dead.pk}/" in listing

    added = _admin_post(admin, base, "/admin/allocations/trainer/add/",
                        {"name": "Grace Hopper", "courses": [str(course.pk)], "capacity": "3", "is_active": "on",
                         "_save": "Save"})
    assert added.status_code == 200 and Trainer.objects.filter(name="Grace Hopper").exists(), added.text[-800:]

    replayed = _admin_post(admin, base, "/admin/workers/deadletter/",
                           {"action": "replay_selected", "_selected_action": [str(dead.pk)], "index": "0"})
    assert replayed.status_code == 200
    dead.refresh_from_db()
    assert dead.status in ("replayed", "resolved") and dead.status_changed_by == "operator"
    assert DeadLetterAction.objects.filter(action="replay").exists()

    def seven_sessions():
        allocation = TrainerAllocation.objects.filter(student=student, course=course).first()
        return allocation and TrainingSession.objects.filter(allocation=allocation).count() == 7

    wait_until(seven_sessions, 30, "the replayed enrollment completes")
    wait_until(lambda: DeadLetter.objects.get(pk=dead.pk).status == "resolved", 15, "dead letter resolved")
    assert TrainerAllocation.objects.get().trainer.name == "Grace Hopper"
