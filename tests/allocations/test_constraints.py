import pytest
from django.db import IntegrityError, transaction

from allocations.models import TrainerAllocation, slot_time
from tests.factories import (
    AllocationFactory,
    CourseFactory,
    StudentFactory,
    TrainerFactory,
)

pytestmark = pytest.mark.django_db
Status = TrainerAllocation.Status


@pytest.mark.parametrize("first", [Status.APPROVED, Status.ACTIVE])
@pytest.mark.parametrize("second", [Status.APPROVED, Status.ACTIVE])
def test_two_holding_allocations_for_same_student_and_course_are_rejected(first, second):
    student, course = StudentFactory(), CourseFactory()
    AllocationFactory(student=student, course=course, status=first, slot_time=slot_time(0))
    with pytest.raises(IntegrityError, match="uniq_holding_allocation_per_student_course"), transaction.atomic():
        AllocationFactory(student=student, course=course, status=second, slot_time=slot_time(1))


@pytest.mark.parametrize("old", [Status.PENDING, Status.ENDED, Status.CANCELLED])
def test_non_holding_allocations_do_not_block_a_new_one(old):
    student, course = StudentFactory(), CourseFactory()
    AllocationFactory(student=student, course=course, status=old)
    AllocationFactory(student=student, course=course, status=old)
    AllocationFactory(student=student, course=course, status=Status.ACTIVE)
    assert TrainerAllocation.objects.filter(student=student, course=course).count() == 3


@pytest.mark.parametrize("days", [[5], [0, 6], []])
def test_weekend_or_empty_slot_days_are_rejected(days):
    with pytest.raises(IntegrityError, match="allocation_slot_weekdays_only"), transaction.atomic():
        AllocationFactory(slot_weekdays=days)


def test_trainer_capacity_has_an_upper_bound():
    with pytest.raises(IntegrityError, match="trainer_capacity_at_most_max"), transaction.atomic():
        TrainerFactory(capacity=11)
