"""allocations.services.allocate: choice of trainer and slot, idempotency, capacity, concurrency."""
import threading
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone

from allocations.models import TrainerAllocation, slot_time
from allocations.services import NoCapacity, PurchaseCancelled, UnknownPurchase, allocate
from tests.allocations.support import allocate_bought
from tests.factories import (
    AllocationFactory,
    CourseFactory,
    PaymentFactory,
    PurchaseFactory,
    StudentFactory,
    TrainerFactory,
    purchase_of,
)

Status = TrainerAllocation.Status


@pytest.mark.django_db
class TestAllocate:
    def test_picks_the_least_loaded_trainer_and_its_lowest_free_slot(self):
        course = CourseFactory()
        busy = TrainerFactory(courses=[course], capacity=5)
        quiet = TrainerFactory(courses=[course], capacity=5)
        AllocationFactory(trainer=busy, course=course, slot_time=slot_time(0))
        AllocationFactory(trainer=busy, course=course, slot_time=slot_time(1))
        AllocationFactory(trainer=quiet, course=course, slot_time=slot_time(0))
        AllocationFactory(trainer=quiet, course=course, slot_time=slot_time(2))
        AllocationFactory(trainer=busy, course=course, slot_time=slot_time(3))
        student = StudentFactory()
        allocation, created = allocate_bought(student.pk, course.pk)
        assert created and allocation.trainer == quiet
        assert allocation.slot_time == slot_time(1)
        assert (allocation.status, allocation.slot_weekdays) == (Status.ACTIVE, [0, 1, 2, 3, 4])

    def test_tie_goes_to_the_lowest_trainer_id(self):
        course = CourseFactory()
        first, second = TrainerFactory(courses=[course]), TrainerFactory(courses=[course])
        assert allocate_bought(StudentFactory().pk, course.pk)[0].trainer == min(first, second, key=lambda t: t.pk)

    def test_load_counts_holding_allocations_of_every_course_of_the_trainer(self):
        course, other_course = CourseFactory(), CourseFactory()
        shared = TrainerFactory(courses=[course, other_course])
        dedicated = TrainerFactory(courses=[course])
        AllocationFactory(trainer=shared, course=other_course, slot_time=slot_time(0))
        AllocationFactory(trainer=dedicated, course=course, slot_time=slot_time(0), status=Status.ENDED)
        assert allocate_bought(StudentFactory().pk, course.pk)[0].trainer == dedicated

    def test_second_call_returns_the_same_allocation(self):
        course, student = CourseFactory(), StudentFactory()
        TrainerFactory(courses=[course])
        first, created = allocate_bought(student.pk, course.pk)
        again, created_again = allocate_bought(student.pk, course.pk)
        assert (created, created_again) == (True, False) and again.pk == first.pk
        assert TrainerAllocation.objects.count() == 1

    def test_an_approved_allocation_counts_as_existing(self):
        existing = AllocationFactory(status=Status.APPROVED)
        allocation, created = allocate_bought(existing.student_id, existing.course_id)
        assert (allocation.pk, created) == (existing.pk, False)

    def test_inactive_trainers_and_trainers_of_other_courses_are_not_candidates(self):
        course = CourseFactory()
        TrainerFactory(courses=[course], is_active=False)
        TrainerFactory(courses=[CourseFactory()])
        with pytest.raises(NoCapacity, match="no active trainer teaches"):
            allocate_bought(StudentFactory().pk, course.pk)

    def test_full_trainers_mean_no_capacity(self):
        course = CourseFactory()
        trainer = TrainerFactory(courses=[course], capacity=2)
        allocate_bought(StudentFactory().pk, course.pk)
        allocate_bought(StudentFactory().pk, course.pk)
        with pytest.raises(NoCapacity, match="at capacity") as info:
            allocate_bought(StudentFactory().pk, course.pk)
        assert "1 active trainers" in info.value.reason
        assert trainer.allocations.count() == 2

    def test_an_ended_allocation_frees_its_slot(self):
        course = CourseFactory()
        trainer = TrainerFactory(courses=[course], capacity=1)
        first, _ = allocate_bought(StudentFactory().pk, course.pk)
        TrainerAllocation.objects.filter(pk=first.pk).update(status=Status.ENDED)
        allocation, created = allocate_bought(StudentFactory().pk, course.pk)
        assert created and (allocation.trainer, allocation.slot_time) == (trainer, slot_time(0))

    def test_an_unknown_purchase_or_one_of_another_student_or_course_is_refused(self):
        course, student = CourseFactory(), StudentFactory()
        TrainerFactory(courses=[course])
        purchase = purchase_of(student.pk, course.pk)
        with pytest.raises(UnknownPurchase, match="unknown purchase"):
            allocate(student.pk, course.pk, purchase_id=10**9)
        with pytest.raises(UnknownPurchase, match="another student or course"):
            allocate(StudentFactory().pk, course.pk, purchase_id=purchase.pk)
        with pytest.raises(UnknownPurchase, match="another student or course"):
            allocate(student.pk, CourseFactory().pk, purchase_id=purchase.pk)
        assert not TrainerAllocation.objects.exists()

    def test_a_cancelled_purchase_gets_no_allocation(self):
        course = CourseFactory()
        TrainerFactory(courses=[course])
        purchase = PurchaseFactory(payment=PaymentFactory(course=course), is_active=False)
        with pytest.raises(PurchaseCancelled):
            allocate(purchase.student_id, course.pk, purchase_id=purchase.pk)
        assert not TrainerAllocation.objects.exists()

    def test_a_re_purchase_releases_the_allocation_of_the_cancelled_one_and_gets_its_own(self):
        course = CourseFactory()
        TrainerFactory(courses=[course])
        old = purchase_of(StudentFactory().pk, course.pk)
        first, _ = allocate(old.student_id, course.pk, purchase_id=old.pk)
        old.is_active, old.cancelled_at = False, timezone.now()
        old.save()
        new = purchase_of(old.student_id, course.pk)
        second, created = allocate(old.student_id, course.pk, purchase_id=new.pk)
        first.refresh_from_db()
        assert created and second.pk != first.pk and second.purchase_id == new.pk
        assert first.status == Status.CANCELLED and first.released_at is not None

    def test_keeps_the_correlation_id(self):
        import uuid

        course = CourseFactory()
        TrainerFactory(courses=[course])
        correlation_id = uuid.uuid4()
        assert allocate_bought(StudentFactory().pk, course.pk, correlation_id)[0].correlation_id == correlation_id


@pytest.mark.django_db(transaction=True)
def test_concurrent_allocations_never_overfill_a_trainer_or_share_a_slot():
    course = CourseFactory()
    trainers = [TrainerFactory(courses=[course], capacity=3) for _ in range(2)]
    students = [StudentFactory() for _ in range(8)]
    # Two requests for the same student race too: they must end with one allocation.
    work = [s.pk for s in students] + [students[0].pk, students[1].pk]
    purchases = {s.pk: purchase_of(s.pk, course.pk).pk for s in students}
    results, errors = [], []
    barrier = threading.Barrier(len(work))

    def run(student_id):
        try:
            barrier.wait()
            results.append(allocate(student_id, course.pk, purchase_id=purchases[student_id]))
        except NoCapacity as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(sid,)) for sid in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    holding = TrainerAllocation.objects.filter(status__in=TrainerAllocation.HOLDING_STATUSES)
    assert holding.count() == 6
    per_trainer = Counter(holding.values_list("trainer_id", flat=True))
    assert per_trainer == {trainers[0].pk: 3, trainers[1].pk: 3}
    assert len(set(holding.values_list("trainer_id", "slot_time"))) == 6
    assert len(set(holding.values_list("student_id", flat=True))) == 6
    assert len(results) + len(errors) == len(work)
