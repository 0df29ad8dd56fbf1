"""allocate_many: the batch path of the allocation API gives what allocate() would, in a few queries."""
import collections

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from allocations.models import TrainerAllocation
from allocations.services import (
    NoCapacity,
    UnknownCourse,
    UnknownStudent,
    allocate,
    allocate_many,
)
from tests.factories import CourseFactory, StudentFactory, TrainerFactory

pytestmark = pytest.mark.django_db


def test_spreads_a_batch_least_loaded_first_within_capacity_in_a_few_queries():
    course = CourseFactory()
    busy = TrainerFactory(capacity=4, courses=[course])
    idle = [TrainerFactory(capacity=4, courses=[course]) for _ in range(3)]
    allocate(StudentFactory().pk, course.pk)  # busy takes one student first
    students = [StudentFactory() for _ in range(12)]
    with CaptureQueriesContext(connection) as queries:
        outcomes = allocate_many([(s.pk, course.pk, None) for s in students])
    assert len(queries) <= 12
    assert all(created for _, created in outcomes)
    per_trainer = collections.Counter(a.trainer_id for a, _ in outcomes)
    everyone = collections.Counter(TrainerAllocation.objects.values_list("trainer_id", flat=True))
    assert max(everyone.values()) - min(everyone.values()) <= 1  # 13 over 4 trainers: 4, 3, 3, 3
    assert sum(per_trainer.values()) == 12 and set(everyone) == {busy.pk, *(t.pk for t in idle)}
    for trainer_id, n in everyone.items():
        slots = TrainerAllocation.objects.filter(trainer_id=trainer_id).values_list("slot_time", flat=True)
        assert len(set(slots)) == n  # one slot per student


def test_existing_unknown_duplicate_and_overflow_are_answered_like_allocate():
    course = CourseFactory()
    TrainerFactory(capacity=2, courses=[course])
    first, second, third = StudentFactory(), StudentFactory(), StudentFactory()
    existing, _ = allocate(first.pk, course.pk)
    outcomes = allocate_many([
        (first.pk, course.pk, None),           # existing
        (second.pk, course.pk, None),          # the last free slot
        (second.pk, course.pk, None),          # the same request twice
        (third.pk, course.pk, None),           # no room left
        (10**12, course.pk, None),             # unknown student
        (first.pk, 10**12, None),              # unknown course
    ])
    assert outcomes[0] == (existing, False)
    allocation, created = outcomes[1]
    assert created and allocation.student_id == second.pk
    assert outcomes[2] == (allocation, False)
    assert isinstance(outcomes[3], NoCapacity)
    assert isinstance(outcomes[4], UnknownStudent) and isinstance(outcomes[5], UnknownCourse)
    assert TrainerAllocation.objects.count() == 2


def test_several_courses_in_one_batch():
    courses = [CourseFactory() for _ in range(3)]
    for course in courses:
        TrainerFactory(capacity=5, courses=[course])
    requests = [(StudentFactory().pk, course.pk, None) for course in courses for _ in range(5)]
    outcomes = allocate_many(requests)
    assert [a.course_id for a, _ in outcomes] == [c for _, c, _ in requests]
    assert TrainerAllocation.objects.count() == 15
