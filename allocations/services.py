"""Allocate a trainer to a student for a course: idempotent, least-loaded first, safe under concurrency.

Concurrency: every allocation INSERT for a trainer happens while its transaction holds that trainer's row lock
(SELECT ... FOR NO KEY UPDATE), and the trainer's load and free slots are re-read *after* taking the lock, so two
allocations can never overfill a trainer or take the same slot. Candidates are first taken with SKIP LOCKED (a
busy trainer does not make everyone wait; under load "least loaded" is therefore among the trainers not being
allocated right now), then, if every candidate is locked, by waiting for them in id order. A try that finds its
trainer full rolls back its savepoint, lock included, before the next: waiters never deadlock
(`_lock_least_loaded` says why that needs care). The database constraints remain the
last word: a unique violation on (student, course) means another request allocated first, and we return that
allocation. Start times are picked by `allocations.slots`, free in UTC across all of the trainer's courses.
"""
from __future__ import annotations

import datetime
import logging
import uuid

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from allocations.errors import AllocationError, NoCapacity, PurchaseCancelled, UnknownPurchase
from allocations.models import WEEKDAYS, Trainer, TrainerAllocation
from allocations.release import entitlement_error, lock_purchases, release
from allocations.slots import free_start, taken_by
from workers.sql import fetch

__all__ = ["AllocationError", "NoCapacity", "PurchaseCancelled", "UnknownPurchase", "allocate"]

log = logging.getLogger(__name__)

HOLDING = TrainerAllocation.HOLDING_STATUSES
STUDENT_COURSE_CONSTRAINT = "uniq_holding_allocation_per_student_course"
MAX_TRIES = 5


def _constraint_name(exc: IntegrityError) -> str | None:
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)


def existing_allocation(student_id: int, course_id: int) -> TrainerAllocation | None:
    return TrainerAllocation.objects.filter(student_id=student_id, course_id=course_id, status__in=HOLDING).first()


def _candidates(course_id: int, exclude: set[int]):
    """Active trainers of the course with room, least loaded first (`Trainer.holding`, kept by triggers: exact for
    a trainer once its row is locked, since every write of its allocations updates it under that lock)."""
    return (
        Trainer.objects.filter(is_active=True, courses__id=course_id, holding__lt=F("capacity"))
        .exclude(pk__in=exclude)
        .order_by("holding", "id")
    )


class _Retry(Exception):
    """Rolls back the savepoint it is raised in, and with it the trainer locks taken there: the locked trainer had
    no free slot after all, or no candidate was free to lock. A transaction that kept such a lock while it waited
    for another trainer could deadlock with one doing the same (`_lock_least_loaded`)."""


def _lock_least_loaded(course_id: int, exclude: set[int]) -> Trainer | None:
    """Lock and return the least loaded trainer of the course with room that nobody is allocating right now (SKIP
    LOCKED); if every candidate is locked, wait for one, taking the locks in id order.

    A row locked and then found full (its load changed while we waited, so PostgreSQL's re-check drops it from
    the result) stays locked until the savepoint it was locked in ends. So the first pass runs in a savepoint
    rolled back when it finds nothing, and the waiting pass goes in id order: a transaction then holds only locks
    of lower ids than the one it waits for, and waiters cannot deadlock (allocations.batch locks in id order too).
    FOR NO KEY UPDATE: serializes allocations per trainer, but does not block the foreign-key checks of the inserts
    that reference the trainer (those take FOR KEY SHARE)."""
    try:
        with transaction.atomic():
            trainer = _candidates(course_id, exclude).select_for_update(
                skip_locked=True, no_key=True, of=("self",)).first()
            if trainer is None:
                raise _Retry
            return trainer
    except _Retry:
        pass
    return _candidates(course_id, exclude).order_by("id").select_for_update(no_key=True, of=("self",)).first()


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
                    raise _Retry
                allocation = TrainerAllocation.objects.create(
                    student_id=student_id, course_id=course_id, trainer=trainer, purchase_id=purchase_id,
                    status=TrainerAllocation.Status.ACTIVE, slot_time=start,
                    slot_weekdays=list(WEEKDAYS), correlation_id=correlation_id,
                )
                return allocation, True
        except _Retry:
            continue
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
