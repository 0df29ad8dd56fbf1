"""Allocate a trainer to a student for a course: idempotent, least-loaded first, safe under concurrency.

Concurrency: every allocation INSERT for a trainer happens while its transaction holds that trainer's row lock
(SELECT ... FOR NO KEY UPDATE), and the trainer's load and free slots are re-read *after* taking the lock, so two
allocations can never overfill a trainer or take the same slot. One allocation locks exactly one trainer, so
concurrent allocations cannot deadlock. Candidates are first taken with SKIP LOCKED (a busy trainer does not
make everyone wait; under load "least loaded" is therefore among the trainers not being allocated right now),
then, if every candidate is locked, by waiting for the least loaded one. The database constraints remain the
last word: a unique violation on (student, course) means another request allocated first, and we return that
allocation; one on (trainer, slot) means someone wrote without the lock, and we try again.
"""
from __future__ import annotations

import logging
import uuid

from django.db import IntegrityError, transaction
from django.db.models import Count, F, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from allocations.models import WEEKDAYS, Trainer, TrainerAllocation, slot_time
from enrollment.models import Course, Student

log = logging.getLogger(__name__)

HOLDING = TrainerAllocation.HOLDING_STATUSES
STUDENT_COURSE_CONSTRAINT = "uniq_holding_allocation_per_student_course"
TRAINER_SLOT_CONSTRAINT = "uniq_holding_allocation_per_trainer_slot"
MAX_TRIES = 5


class AllocationError(Exception):
    """Base class of the reasons an allocation cannot be made."""


class UnknownStudent(AllocationError):
    pass


class UnknownCourse(AllocationError):
    pass


class NoCapacity(AllocationError):
    """No active trainer of the course has a free slot (now). Retrying later may succeed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def _free_slot(trainer: Trainer) -> int | None:
    """The trainer's lowest free slot index, counted under the trainer's lock (authoritative)."""
    holding = TrainerAllocation.objects.filter(trainer=trainer, status__in=HOLDING)
    used = set(holding.values_list("slot_time", flat=True))
    if len(used) >= trainer.capacity:
        return None
    return next((i for i in range(trainer.capacity) if slot_time(i) not in used), None)


def _no_capacity(course_id: int) -> NoCapacity:
    teachers = Trainer.objects.filter(is_active=True, courses__id=course_id).count()
    if teachers == 0:
        return NoCapacity(f"no active trainer teaches course {course_id}")
    return NoCapacity(f"all {teachers} active trainers of course {course_id} are at capacity")


def allocate(
    student_id: int, course_id: int, correlation_id: uuid.UUID | None = None
) -> tuple[TrainerAllocation, bool]:
    """The student's holding allocation for the course: the existing one (created=False) or a new one.

    Raises UnknownStudent, UnknownCourse or NoCapacity. Runs in its own transaction (a savepoint when the caller
    is already in one); keep the caller's transaction short, it holds the trainer's lock until it ends.
    """
    found = existing_allocation(student_id, course_id)
    if found is not None:
        return found, False
    if not Student.objects.filter(pk=student_id).exists():
        raise UnknownStudent(f"unknown student {student_id}")
    if not Course.objects.filter(pk=course_id).exists():
        raise UnknownCourse(f"unknown course {course_id}")

    full: set[int] = set()  # trainers found full once locked (their load was read before the lock)
    for _ in range(MAX_TRIES + Trainer.objects.filter(courses__id=course_id).count()):
        try:
            with transaction.atomic():
                trainer = _lock_least_loaded(course_id, full)
                if trainer is None:
                    raise _no_capacity(course_id)
                index = _free_slot(trainer)
                if index is None:
                    full.add(trainer.pk)
                    continue
                allocation = TrainerAllocation.objects.create(
                    student_id=student_id,
                    course_id=course_id,
                    trainer=trainer,
                    status=TrainerAllocation.Status.ACTIVE,
                    slot_time=slot_time(index),
                    slot_weekdays=list(WEEKDAYS),
                    correlation_id=correlation_id,
                )
                return allocation, True
        except IntegrityError as exc:
            name = _constraint_name(exc)
            if name == STUDENT_COURSE_CONSTRAINT:
                found = existing_allocation(student_id, course_id)
                if found is not None:
                    return found, False
            elif name != TRAINER_SLOT_CONSTRAINT:
                raise
            log.info("allocation conflict, trying again", extra={"constraint": name, "student_id": student_id})
    raise NoCapacity(f"could not take a free slot for course {course_id} after several tries (contention)")
