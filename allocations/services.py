"""Allocate a trainer to a student for a course: idempotent, least-loaded first, safe under concurrency.

Concurrency: every allocation INSERT for a trainer happens while its transaction holds that trainer's row lock
(SELECT ... FOR NO KEY UPDATE), and the trainer's load and free slots are re-read *after* taking the lock, so two
allocations can never overfill a trainer or take the same slot. One allocation locks exactly one trainer, so
concurrent allocations cannot deadlock. Candidates are first taken with SKIP LOCKED (a busy trainer does not
make everyone wait; under load "least loaded" is therefore among the trainers not being allocated right now),
then, if every candidate is locked, by waiting for the least loaded one. The database constraints remain the
last word: a unique violation on (student, course) means another request allocated first, and we return that
allocation. Start times are picked by `allocations.slots`, free in UTC across all of the trainer's courses.
"""
from __future__ import annotations

import datetime
import heapq
import logging
import uuid
from typing import NamedTuple

from django.db import IntegrityError, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from allocations.errors import AllocationError, NoCapacity, PurchaseCancelled, UnknownPurchase
from allocations.models import WEEKDAYS, Trainer, TrainerAllocation
from allocations.release import entitlement_error, lock_purchases, release
from allocations.slots import Booking, free_start, taken_by
from workers.sql import fetch, unnest_insert

__all__ = ["AllocationError", "NoCapacity", "PurchaseCancelled", "Request", "UnknownPurchase", "allocate",
           "allocate_many"]

log = logging.getLogger(__name__)

HOLDING = TrainerAllocation.HOLDING_STATUSES
STUDENT_COURSE_CONSTRAINT = "uniq_holding_allocation_per_student_course"
MAX_TRIES = 5


def _constraint_name(exc: IntegrityError) -> str | None:
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)


def existing_allocation(student_id: int, course_id: int) -> TrainerAllocation | None:
    return TrainerAllocation.objects.filter(student_id=student_id, course_id=course_id, status__in=HOLDING).first()


def _candidates(course_id: int, exclude: set[int]):
    load = (
        TrainerAllocation.objects.filter(trainer=OuterRef("pk"), status__in=HOLDING)
        .order_by()
        .values("trainer")
        .annotate(n=Count("*"))
        .values("n")
    )
    return (
        Trainer.objects.filter(is_active=True, courses__id=course_id)
        .exclude(pk__in=exclude)
        .annotate(load=Coalesce(Subquery(load, output_field=IntegerField()), Value(0)))
        .filter(load__lt=F("capacity"))
        .order_by("load", "id")
    )


def _lock_least_loaded(course_id: int, exclude: set[int]) -> Trainer | None:
    for skip_locked in (True, False):
        # FOR NO KEY UPDATE: serializes allocations per trainer, but does not block the foreign-key checks of
        # session inserts that reference the trainer (those take FOR KEY SHARE).
        candidates = _candidates(course_id, exclude)
        trainer = candidates.select_for_update(skip_locked=skip_locked, no_key=True, of=("self",)).first()
        if trainer is not None:
            return trainer
    return None


COURSE_SQL = "SELECT time_zone, session_minutes FROM courses WHERE id = %s"


def _free_slot(trainer: Trainer, course: tuple[str, int]) -> datetime.time | None:
    """The earliest start time in the course's zone free across all of the trainer's bookings, or None."""
    taken = taken_by([trainer.pk])[trainer.pk]
    if len(taken) >= trainer.capacity:
        return None
    return free_start(*course, WEEKDAYS, taken, timezone.now().date())


def _no_capacity(course_id: int) -> NoCapacity:
    teachers = Trainer.objects.filter(is_active=True, courses__id=course_id).count()
    if teachers == 0:
        return NoCapacity(f"no active trainer teaches course {course_id}")
    return NoCapacity(f"all {teachers} active trainers of course {course_id} are at capacity")


def allocate(
    student_id: int, course_id: int, correlation_id: uuid.UUID | None = None, *, purchase_id: int
) -> tuple[TrainerAllocation, bool]:
    """The holding allocation of the student's purchase of the course: the existing one (created=False) or a
    new one.

    Raises UnknownPurchase, PurchaseCancelled (checked with the purchase locked, see allocations.release) or
    NoCapacity. A holding allocation of an earlier, cancelled purchase of the same course is released first (a
    re-purchase racing its refund). Runs in its own transaction (a savepoint when the caller is already in
    one); keep the caller's transaction short, it holds the trainer's lock until it ends.
    """
    with transaction.atomic():
        problem = entitlement_error(purchase_id, student_id, course_id, lock_purchases([purchase_id]))
        if problem is not None:
            raise problem
        found = existing_allocation(student_id, course_id)
        if found is not None:
            if found.purchase_id in (None, purchase_id):
                return found, False
            release(allocation_ids=[found.pk])  # its purchase is not the active one: cancelled
        return _allocate_locked(student_id, course_id, correlation_id, purchase_id)


def _allocate_locked(
    student_id: int, course_id: int, correlation_id: uuid.UUID | None, purchase_id: int
) -> tuple[TrainerAllocation, bool]:
    full: set[int] = set()  # trainers found full once locked (their load was read before the lock)
    [course] = fetch(COURSE_SQL, [course_id])
    for _ in range(MAX_TRIES + Trainer.objects.filter(courses__id=course_id).count()):
        try:
            with transaction.atomic():
                trainer = _lock_least_loaded(course_id, full)
                if trainer is None:
                    raise _no_capacity(course_id)
                start = _free_slot(trainer, course)
                if start is None:
                    full.add(trainer.pk)
                    continue
                allocation = TrainerAllocation.objects.create(
                    student_id=student_id, course_id=course_id, trainer=trainer, purchase_id=purchase_id,
                    status=TrainerAllocation.Status.ACTIVE, slot_time=start,
                    slot_weekdays=list(WEEKDAYS), correlation_id=correlation_id,
                )
                return allocation, True
        except IntegrityError as exc:
            name = _constraint_name(exc)
            if name == STUDENT_COURSE_CONSTRAINT:
                found = existing_allocation(student_id, course_id)
                if found is not None:
                    return found, False
            else:
                raise
            log.info("allocation conflict, trying again", extra={"constraint": name, "student_id": student_id})
    raise NoCapacity(f"could not take a free slot for course {course_id} after several tries (contention)")


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


AllocationOutcome = tuple[TrainerAllocation, bool] | AllocationError


class Request(NamedTuple):
    student_id: int
    course_id: int
    correlation_id: uuid.UUID | None
    purchase_id: int


def allocate_many(requests: list[Request]) -> list[AllocationOutcome]:
    """`allocate()` for a batch, in one transaction and a handful of queries per course instead of a round per
    request.

    The purchases are locked and checked in one query, existing allocations read in one. Per course, trainer
    loads are read once, the requests are spread least-loaded-first in memory, the chosen trainers are locked
    in id order (no deadlock with each other or with `allocate()`, which holds one trainer at a time), their
    slots are re-read under the locks, and all new allocations go in one INSERT. Requests that do not fit
    (trainers filled up meanwhile), duplicates within the batch and re-purchases whose old allocation still
    holds go through `allocate()` one by one. Returns, per request in order, (allocation, created) or the
    AllocationError.
    """
    results: list[AllocationOutcome | None] = [None] * len(requests)
    with transaction.atomic():
        purchases = lock_purchases([r.purchase_id for r in requests])
        held = [pk for (pk,) in fetch(HOLDING_FOR_PAIRS_SQL, [list(HOLDING), [r.student_id for r in requests],
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
        for course_id, indexes in by_course.items():
            placed = _allocate_course(course_id, [(i, requests[i]) for i in indexes])
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


HOLDING_FOR_PAIRS_SQL = """
SELECT id FROM trainer_allocations
WHERE status = ANY(%b::text[]) AND (student_id, course_id) IN (SELECT * FROM unnest(%b::bigint[], %b::bigint[]))
"""
# Active trainers of the course with a free slot, least loaded first. Each trainer's load is counted on the
# partial unique index of holding (trainer, slot) pairs, so the cost follows the course's trainers and their
# capacity (at most 10), not the size of the allocations table.
TRAINER_LOADS_SQL = """
SELECT t.id, t.capacity, held.load, c.time_zone, c.session_minutes
FROM trainer_courses tc
JOIN courses c ON c.id = tc.course_id
JOIN trainers t ON t.id = tc.trainer_id
CROSS JOIN LATERAL (
    SELECT count(*) AS load FROM trainer_allocations a WHERE a.trainer_id = t.id AND a.status = ANY(%b::text[])
) held
WHERE tc.course_id = %s AND t.is_active AND held.load < t.capacity
ORDER BY held.load, t.id
"""
LOCK_TRAINERS_SQL = """
SELECT id, capacity FROM trainers WHERE id = ANY(%b::bigint[]) AND is_active ORDER BY id FOR NO KEY UPDATE
"""


def _allocate_course(course_id: int, items: list[tuple[int, Request]]) -> dict[int, tuple[TrainerAllocation, bool]]:
    """One course's share of `allocate_many`, in one savepoint. Returns index -> (allocation, created)."""
    with transaction.atomic():  # a savepoint of allocate_many's transaction
        loads = fetch(TRAINER_LOADS_SQL, [list(HOLDING), course_id])
        heap = [(load, pk, capacity) for pk, capacity, load, _, _ in loads]
        heapq.heapify(heap)
        chosen: set[int] = set()
        for _ in items:
            if not heap:
                break
            load, pk, capacity = heapq.heappop(heap)
            chosen.add(pk)
            if load + 1 < capacity:
                heapq.heappush(heap, (load + 1, pk, capacity))
        if not chosen:
            return {}
        capacity = dict(fetch(LOCK_TRAINERS_SQL, [sorted(chosen)]))
        planned = _plan(loads[0][3:], items, capacity, taken_by(list(capacity)))
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
            returning="id, student_id, trainer_id, slot_time, correlation_id, purchase_id, created_at",
        )
    by_student = {
        student_id: TrainerAllocation(
            pk=pk, student_id=student_id, course_id=course_id, trainer_id=trainer_id,
            status=TrainerAllocation.Status.ACTIVE, slot_time=at, slot_weekdays=list(WEEKDAYS),
            correlation_id=correlation_id, purchase_id=purchase_id, created_at=created_at,
        )
        for pk, student_id, trainer_id, at, correlation_id, purchase_id, created_at in inserted
    }
    return {i: (by_student[plan[0]], True) for i, plan in planned.items() if plan[0] in by_student}
