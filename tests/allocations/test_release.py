"""Releasing an allocation (refund, or an operator ending it) frees its trainer's time: its future sessions are
cancelled (past ones stay), the student's pages are refreshed, and it never crosses a window being filled or an
allocation being made."""
import datetime
import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from allocations.models import TrainerAllocation
from allocations.release import release
from enrollment.events import ALLOCATION_RELEASED
from purchases.models import StudentCoursePurchase
from purchases.settlement import cancel_purchase
from sessions_sched.models import TrainingSession
from sessions_sched.scheduler import ensure_window, topup_all
from tests.allocations.support import allocate_bought
from tests.factories import (
    AllocationFactory,
    CourseFactory,
    SessionFactory,
    StudentFactory,
    TrainerFactory,
    purchase_of,
)
from tests.purchases.locks import wait_until_blocked_on_a_lock
from workers.models import OutboxEvent

Status = TrainerAllocation.Status


def statuses(allocation):
    return sorted(TrainingSession.objects.filter(allocation=allocation).values_list("status", flat=True))


@pytest.mark.django_db
def test_ending_in_the_admin_cancels_future_sessions_and_keeps_past_ones(admin_client):
    allocation = AllocationFactory()
    ensure_window(allocation)
    past = SessionFactory(allocation=allocation, scheduled_date=datetime.date(2020, 1, 6),
                          status=TrainingSession.Status.COMPLETED)
    data = {"student": allocation.student_id, "course": allocation.course_id, "trainer": allocation.trainer_id,
            "status": "ended", "slot_time": "09:00", "slot_weekdays": "0,1,2,3,4", "correlation_id": ""}
    response = admin_client.post(f"/admin/allocations/trainerallocation/{allocation.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]
    allocation.refresh_from_db()
    assert allocation.status == Status.ENDED and allocation.released_at is not None
    assert statuses(allocation) == ["cancelled"] * 7 + ["completed"]
    past.refresh_from_db()
    assert past.status == TrainingSession.Status.COMPLETED
    assert OutboxEvent.objects.filter(event_type=ALLOCATION_RELEASED).count() == 1


@pytest.mark.django_db
def test_the_admin_action_ends_the_selected_allocations(admin_client):
    ended, kept = AllocationFactory(), AllocationFactory()
    for allocation in (ended, kept):
        ensure_window(allocation)
    response = admin_client.post("/admin/allocations/trainerallocation/",
                                 {"action": "end_allocations", "_selected_action": [ended.pk]})
    assert response.status_code == 302
    assert statuses(ended) == ["cancelled"] * 7 and statuses(kept) == ["scheduled"] * 7


@pytest.mark.django_db
def test_topup_covers_approved_allocations_too():
    approved = AllocationFactory(status=Status.APPROVED)
    report = topup_all()
    assert report.active == 1 and report.sessions_created == 7
    assert statuses(approved) == ["scheduled"] * 7


@pytest.mark.django_db(transaction=True)
def test_a_cancellation_while_the_window_is_being_filled_leaves_no_future_session():
    """The scheduler holds the allocation's lock and has inserted its window, not committed yet; the release
    waits for the lock, then cancels every future session, the new ones included."""
    allocation = AllocationFactory()
    outcome = {}

    def cancel():
        try:
            with transaction.atomic():
                outcome["released"] = release(allocation_ids=[allocation.pk])
        finally:
            connection.close()

    with transaction.atomic():
        assert ensure_window(allocation) == 7
        thread = threading.Thread(target=cancel)
        thread.start()
        wait_until_blocked_on_a_lock()
    thread.join(10)
    assert outcome["released"][0].sessions_cancelled == 7
    assert not TrainingSession.objects.filter(status="scheduled", starts_at__gt=timezone.now()).exists()


@pytest.mark.django_db(transaction=True)
def test_an_allocation_racing_the_cancellation_of_its_purchase_is_found_and_released():
    """allocate() holds the purchase FOR SHARE and has made the allocation, not committed yet; the refund's
    cancellation waits for it, so the PURCHASE_CANCELLED it emits comes after the allocation exists."""
    course = CourseFactory()
    TrainerFactory(courses=[course])
    student = StudentFactory()
    purchase_of(student.pk, course.pk)  # committed: the refund must see it
    outcome = {}

    def refund():
        try:
            with transaction.atomic():
                purchase = StudentCoursePurchase.objects.get(student=student)
                outcome["cancelled"] = cancel_purchase(purchase.payment, "requested_by_customer")
        finally:
            connection.close()

    with transaction.atomic():
        allocation, created = allocate_bought(student.pk, course.pk)
        thread = threading.Thread(target=refund)
        thread.start()
        wait_until_blocked_on_a_lock()
    thread.join(10)
    assert created and outcome["cancelled"]
    purchase = StudentCoursePurchase.objects.get(student=student)
    with transaction.atomic():
        [released] = release(purchase_ids=[purchase.pk])  # what the allocation stage does with PURCHASE_CANCELLED
    assert released.allocation_id == allocation.pk
    assert not TrainerAllocation.objects.filter(status__in=TrainerAllocation.HOLDING_STATUSES).exists()


def test_release_refuses_other_statuses():
    with pytest.raises(ValueError, match="ended or cancelled"):
        release(allocation_ids=[1], status="active")

