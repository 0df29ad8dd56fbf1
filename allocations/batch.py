"""The batch path of the allocation API: `allocate_many` answers a list of requests in one transaction and a
handful of queries per course, with what `allocate()` would answer for each. Same locking rules as
`allocations.services` (its docstring), plus one: a batch takes all its trainer locks in one statement."""
from __future__ import annotations

import datetime
import heapq
import uuid
from typing import NamedTuple

from django.db import transaction
from django.utils import timezone

from allocations.errors import AllocationError
from allocations.models import WEEKDAYS, TrainerAllocation
from allocations.release import entitlement_error, lock_purchases
from allocations.services import HOLDING, allocate
from allocations.slots import Booking, free_start, taken_by
from workers.sql import fetch, unnest_insert


class Placed(NamedTuple):
    """An allocation the batch path has just inserted, as the API answers it (`allocations.api.allocation_body`
    reads these attributes of it, as of a TrainerAllocation): the INSERT's RETURNING as it came, with no model
    instance built per row (7.6-8.1 us each against 0.2, measured: about 15% of the web's CPU per allocation end
    to end)."""

    pk: int
    student_id: int
    course_id: int
    trainer_id: int
    slot_time: datetime.time
    purchase_id: int
    status: str = TrainerAllocation.Status.ACTIVE


AllocationOutcome = tuple[TrainerAllocation | Placed, bool] | AllocationError


class Request(NamedTuple):
    student_id: int
    course_id: int
    correlation_id: uuid.UUID | None
    purchase_id: int


def allocate_many(requests: list[Request]) -> list[AllocationOutcome]:
    """`allocate()` for a batch, in one transaction and a handful of queries per course instead of a round per
    request.

    The purchases are locked and checked in one query, existing allocations read in one. Per course, trainer
    loads are read once and the requests spread least-loaded-first in memory; the trainers of every course are
    then locked together, in id order (`_allocate_courses` says why); their slots are re-read under the locks,
    and each course's new allocations go in one INSERT. Requests that do not fit
    (trainers filled up meanwhile), duplicates within the batch and re-purchases whose old allocation still
    holds go through `allocate()` one by one. Returns, per request in order, (allocation, created) or the
    AllocationError.
    """
    results: list[AllocationOutcome | None] = [None] * len(requests)
    with transaction.atomic():
        purchases = lock_purchases([r.purchase_id for r in requests])
        held = [pk for (pk,) in fetch(HOLDING_FOR_PAIRS_SQL, [[r.student_id for r in requests],
                                                              [r.course_id for r in requests]])]
        existing = ({(a.student_id, a.course_id): a for a in TrainerAllocation.objects.filter(pk__in=held)}
                    if held else {})
        by_course: dict[int, list[int]] = {}
        seen: set[tuple[int, int]] = set()
        leftovers: list[int] = []
        for i, r in enumerate(requests):
            pair = (r.student_id, r.course_id)
            problem = entitlement_error(r.purchase_id, r.student_id, r.course_id, purchases)
            if problem is not None:
                results[i] = problem
            elif pair in existing and existing[pair].purchase_id in (None, r.purchase_id):
                results[i] = (existing[pair], False)
            elif pair in existing or pair in seen:
                leftovers.append(i)  # an old purchase's allocation, or the same request twice: allocate()
            else:
                seen.add(pair)
                by_course.setdefault(r.course_id, []).append(i)
        placed = _allocate_courses({c: [(i, requests[i]) for i in indexes] for c, indexes in by_course.items()})
        for indexes in by_course.values():
            leftovers.extend(i for i in indexes if i not in placed)
        for i, outcome in placed.items():
            results[i] = outcome
        for i in sorted(leftovers):
            r = requests[i]
            try:
                results[i] = allocate(r.student_id, r.course_id, r.correlation_id, purchase_id=r.purchase_id)
            except AllocationError as exc:
                results[i] = exc
    return results  # type: ignore[return-value]


# The holding statuses are written into the statement, not passed: the partial unique index on (student, course)
# of holding allocations serves it only when PostgreSQL can see at planning time that the statuses are its own. As a
# parameter, the generic plan psycopg's prepared statement settles on intersected the course's and the student's
# whole indexes per pair instead (8-11 ms a batch of 250 in the end-to-end bench, against 0.4).
HOLDING_FOR_PAIRS_SQL = f"""
SELECT id FROM trainer_allocations
WHERE status IN ({", ".join(f"'{status.value}'" for status in HOLDING)})
  AND (student_id, course_id) IN (SELECT * FROM unnest(%b::bigint[], %b::bigint[]))
"""
# Active trainers of the course with a free slot, least loaded first, by their count of holding allocations
# (`trainers.holding`, kept by triggers: migration 0005). Counting them here instead cost an index scan and heap
# visits per trainer of the course on every batch. Only the first `wanted` can be chosen (`_choose_trainers`).
TRAINER_LOADS_SQL = """
SELECT t.id, t.capacity, t.holding, c.time_zone, c.session_minutes
FROM trainer_courses tc
JOIN courses c ON c.id = tc.course_id
JOIN trainers t ON t.id = tc.trainer_id
WHERE tc.course_id = %s AND t.is_active AND t.holding < t.capacity
ORDER BY t.holding, t.id
LIMIT %s
"""
LOCK_TRAINERS_SQL = """
SELECT id, capacity FROM trainers WHERE id = ANY(%b::bigint[]) AND is_active ORDER BY id FOR NO KEY UPDATE
"""


def _allocate_courses(by_course: dict[int, list[tuple[int, Request]]]) -> dict[int, tuple[Placed, bool]]:
    """Every course's share of `allocate_many`. Returns index -> (allocation, created).

    The trainers that all the courses would use are locked first, in one statement and in id order, so a batch
    never holds one trainer while it waits for another that a second batch holds before waiting for the first:
    batches cannot deadlock with each other, nor with `allocate()`, which locks one trainer. (Locking course by
    course took the locks in the order of the courses, and a trainer teaches several courses: with three
    allocation consumers, batches deadlocked every few seconds and fell back to one request at a time.)"""
    chosen = {course_id: _choose_trainers(course_id, len(items)) for course_id, items in by_course.items()}
    everyone = sorted({pk for trainers, _ in chosen.values() for pk in trainers})
    capacity = dict(fetch(LOCK_TRAINERS_SQL, [everyone])) if everyone else {}
    placed: dict[int, tuple[Placed, bool]] = {}
    for course_id, items in by_course.items():
        trainers, course = chosen[course_id]
        locked = {pk: capacity[pk] for pk in trainers if pk in capacity}
        if locked:
            placed.update(_allocate_course(course_id, course, items, locked))
    return placed


def _choose_trainers(course_id: int, wanted: int) -> tuple[list[int], tuple[str, int] | None]:
    """The trainers that `wanted` requests of the course would go to, least loaded first, by loads read without
    a lock (the plan is re-checked under the locks), and the course's (time zone, session minutes).

    Only the `wanted` least loaded trainers are read: the k-th request goes to one of the first k in (load, id)
    order, since every trainer after those is at least as loaded as the k-th, and a trainer taken goes back with
    a higher load. (Reading all of a course's trainers was 480 rows per course and batch in the bench's catalog,
    for about 50 requests.)"""
    loads = fetch(TRAINER_LOADS_SQL, [course_id, wanted])
    heap = [(load, pk, capacity) for pk, capacity, load, _, _ in loads]
    heapq.heapify(heap)
    chosen: set[int] = set()
    for _ in range(wanted):
        if not heap:
            break
        load, pk, capacity = heapq.heappop(heap)
        chosen.add(pk)
        if load + 1 < capacity:
            heapq.heappush(heap, (load + 1, pk, capacity))
    return sorted(chosen), (loads[0][3:] if loads else None)


def _allocate_course(
    course_id: int, course: tuple[str, int], items: list[tuple[int, Request]], capacity: dict[int, int],
) -> dict[int, tuple[Placed, bool]]:
    """One course's requests over its locked trainers, in one savepoint. Returns index -> (allocation, created)."""
    with transaction.atomic():  # a savepoint of allocate_many's transaction
        planned = _plan(course, items, capacity, taken_by(list(capacity)))
        # One INSERT for the course (workers/sql.py says why not bulk_create). A concurrent allocate() of the same
        # student and course wins the partial unique index: that row is not returned here, and the request is
        # left to allocate(), which answers it as existing.
        plans = list(planned.values())
        inserted = unnest_insert(
            "trainer_allocations",
            {"student_id": "bigint", "course_id": "bigint", "trainer_id": "bigint", "slot_time": "time",
             "correlation_id": "uuid", "purchase_id": "bigint"},
            {"student_id": [p[0] for p in plans], "course_id": [course_id] * len(plans),
             "trainer_id": [p[1] for p in plans], "slot_time": [p[2] for p in plans],
             "correlation_id": [p[3] for p in plans], "purchase_id": [p[4] for p in plans]},
            constants={"status": f"'{TrainerAllocation.Status.ACTIVE.value}'",
                       "slot_weekdays": f"'{{{','.join(map(str, WEEKDAYS))}}}'::smallint[]",
                       "created_at": "clock_timestamp()"},
            on_conflict="ON CONFLICT DO NOTHING",
            returning="id, student_id, trainer_id, slot_time, purchase_id",
        )
    by_student = {student_id: Placed(pk, student_id, course_id, trainer_id, at, purchase_id)
                  for pk, student_id, trainer_id, at, purchase_id in inserted}
    return {i: (by_student[plan[0]], True) for i, plan in planned.items() if plan[0] in by_student}


def _plan(
    course: tuple[str, int], items: list[tuple[int, Request]], capacity: dict[int, int],
    taken: dict[int, list[Booking]],
) -> dict[int, tuple[int, int, datetime.time, uuid.UUID | None, int]]:
    """Spread the requests over the locked trainers least-loaded first, each at the earliest start free across
    the trainer's bookings (`allocations.slots`). Index -> (student, trainer, start, correlation, purchase)."""
    zone, minutes = course
    today = timezone.now().date()
    free = [(len(taken[pk]), pk) for pk in capacity if len(taken[pk]) < capacity[pk]]
    heapq.heapify(free)
    planned = {}
    for i, (student_id, _, correlation_id, purchase_id) in items:
        start = None
        while free and start is None:
            load, pk = heapq.heappop(free)
            start = free_start(zone, minutes, WEEKDAYS, taken[pk], today)
        if start is None:
            break  # no trainer has room left: the rest goes through allocate(), which says so
        taken[pk].append(Booking(zone, start, minutes, frozenset(WEEKDAYS)))
        planned[i] = (student_id, pk, start, correlation_id, purchase_id)
        if load + 1 < capacity[pk]:
            heapq.heappush(free, (load + 1, pk))
    return planned
