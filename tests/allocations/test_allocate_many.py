"""allocate_many: the batch path of the allocation API gives what allocate() would, in a few queries."""
import collections

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from allocations.batch import HOLDING_FOR_PAIRS_SQL, Request, allocate_many
from allocations.models import TrainerAllocation
from allocations.services import NoCapacity, PurchaseCancelled, UnknownPurchase
from tests.allocations.support import allocate_bought, bought
from tests.factories import (
    AllocationFactory,
    CourseFactory,
    PurchaseFactory,
    StudentFactory,
    TrainerFactory,
    purchase_of,
)

pytestmark = pytest.mark.django_db


def test_spreads_a_batch_least_loaded_first_within_capacity_in_a_few_queries():
    course = CourseFactory()
    busy = TrainerFactory(capacity=4, courses=[course])
    idle = [TrainerFactory(capacity=4, courses=[course]) for _ in range(3)]
    allocate_bought(StudentFactory().pk, course.pk)  # busy takes one student first
    requests = [bought(StudentFactory().pk, course.pk) for _ in range(12)]
    with CaptureQueriesContext(connection) as queries:
        outcomes = allocate_many(requests)
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
    existing, _ = allocate_bought(first.pk, course.pk)
    cancelled = PurchaseFactory(payment__course=course, is_active=False)
    outcomes = allocate_many([
        bought(first.pk, course.pk),                                  # existing
        bought(second.pk, course.pk),                                 # the last free slot
        bought(second.pk, course.pk),                                 # the same request twice
        bought(third.pk, course.pk),                                  # no room left
        Request(third.pk, course.pk, None, 10**12),                   # unknown purchase
        Request(third.pk, course.pk, None, purchase_of(first.pk, course.pk).pk),  # another student's purchase
        Request(cancelled.student_id, course.pk, None, cancelled.pk),  # a cancelled purchase
    ])
    assert outcomes[0] == (existing, False)
    allocation, created = outcomes[1]
    assert created and allocation.student_id == second.pk
    again, created_again = outcomes[2]
    assert again.pk == allocation.pk and not created_again  # the same allocation, answered as existing
    assert isinstance(outcomes[3], NoCapacity)
    assert isinstance(outcomes[4], UnknownPurchase) and isinstance(outcomes[5], UnknownPurchase)
    assert isinstance(outcomes[6], PurchaseCancelled)
    assert TrainerAllocation.objects.count() == 2


def test_several_courses_in_one_batch():
    courses = [CourseFactory() for _ in range(3)]
    for course in courses:
        TrainerFactory(capacity=5, courses=[course])
    requests = [bought(StudentFactory().pk, course.pk) for course in courses for _ in range(5)]
    outcomes = allocate_many(requests)
    assert [a.course_id for a, _ in outcomes] == [r.course_id for r in requests]
    assert [a.purchase_id for a, _ in outcomes] == [r.purchase_id for r in requests]
    assert TrainerAllocation.objects.count() == 15


def test_the_lookup_of_holding_allocations_uses_the_partial_unique_index_in_a_generic_plan():
    """psycopg prepares a statement run often, and PostgreSQL settles on a generic plan for it: that plan must still
    find a batch's (student, course) pairs in the partial unique index of holding allocations, not intersect the
    course's and the students' whole indexes per pair (the course here has 5,000 ended allocations)."""
    course, trainer = CourseFactory(), TrainerFactory(capacity=10)
    students = [StudentFactory().pk for _ in range(30)]
    with connection.cursor() as cur:
        cur.execute("INSERT INTO students (name, email, created_at) SELECT 'S', 'past' || n || '@example.com', now()"
                    " FROM generate_series(1, 5000) n")
        cur.execute("INSERT INTO trainer_allocations (student_id, course_id, trainer_id, status, slot_time,"
                    " slot_weekdays, created_at) SELECT id, %s, %s, 'ended', '08:00', '{0,1,2,3,4}', now()"
                    " FROM students WHERE email LIKE 'past%%'", [course.pk, trainer.pk])
        cur.execute("ANALYZE trainer_allocations")
        cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        sql = HOLDING_FOR_PAIRS_SQL.replace("%b::bigint[], %b::bigint[]", "$1::bigint[], $2::bigint[]")
        cur.execute(f"PREPARE holding_pairs(bigint[], bigint[]) AS {sql}")
        try:
            cur.execute("EXPLAIN EXECUTE holding_pairs(%s, %s)", [students, [course.pk] * len(students)])
            plan = "\n".join(line for (line,) in cur.fetchall())
        finally:
            cur.execute("DEALLOCATE holding_pairs")
    assert "uniq_holding_allocation_per_student_course" in plan, plan


def test_a_course_with_more_trainers_than_requests_gives_them_to_the_least_loaded():
    course = CourseFactory()
    trainers = [TrainerFactory(capacity=4, courses=[course]) for _ in range(6)]
    for trainer, load in zip(trainers, [3, 0, 2, 0, 1, 3]):
        for _ in range(load):
            AllocationFactory(trainer=trainer, course=course)
    outcomes = allocate_many([bought(StudentFactory().pk, course.pk) for _ in range(2)])
    assert sorted(allocation.trainer_id for allocation, _ in outcomes) == [trainers[1].pk, trainers[3].pk]
