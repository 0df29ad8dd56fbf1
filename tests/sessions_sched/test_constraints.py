import datetime

import pytest
from django.db import IntegrityError, connection, transaction

from allocations.models import slot_time
from sessions_sched.models import TrainingSession
from tests.factories import AllocationFactory, CourseFactory, SessionFactory, TrainerFactory

pytestmark = pytest.mark.django_db
DAY = datetime.date(2030, 1, 7)


def test_same_allocation_date_and_time_is_rejected():
    session = SessionFactory(scheduled_date=DAY)
    with pytest.raises(IntegrityError, match="uniq_session_per_allocation_slot"), transaction.atomic():
        SessionFactory(allocation=session.allocation, scheduled_date=DAY)


def test_same_allocation_on_another_day_is_allowed():
    session = SessionFactory(scheduled_date=DAY)
    SessionFactory(allocation=session.allocation, scheduled_date=DAY + datetime.timedelta(days=1))
    assert session.allocation.sessions.count() == 2


def test_a_trainer_cannot_be_booked_twice_at_the_same_instant():
    trainer = TrainerFactory()
    first = AllocationFactory(trainer=trainer, slot_time=slot_time(0))
    second = AllocationFactory(trainer=trainer, slot_time=slot_time(1))
    SessionFactory(allocation=first, scheduled_date=DAY)
    starts_at = first.sessions.get().starts_at
    with pytest.raises(IntegrityError, match="no_overlapping_trainer_sessions"), transaction.atomic():
        SessionFactory(allocation=second, scheduled_date=DAY, starts_at=starts_at)


@pytest.mark.parametrize("offset_minutes,overlaps", [(30, True), (89, True), (90, False), (-90, False), (-60, True)])
def test_a_trainers_sessions_never_overlap_as_intervals(offset_minutes, overlaps):
    """90-minute sessions: one starting 30 or 89 minutes into another overlaps it; one starting at its end
    does not (the range is half-open)."""
    trainer = TrainerFactory()
    long_course = CourseFactory(session_minutes=90)
    first = AllocationFactory(trainer=trainer, course=long_course, slot_time=slot_time(0))
    second = AllocationFactory(trainer=trainer, course=long_course, slot_time=slot_time(1))
    booked = SessionFactory(allocation=first, scheduled_date=DAY)
    assert booked.ends_at - booked.starts_at == datetime.timedelta(minutes=90)
    starts_at = booked.starts_at + datetime.timedelta(minutes=offset_minutes)
    if overlaps:
        with pytest.raises(IntegrityError, match="no_overlapping_trainer_sessions"), transaction.atomic():
            SessionFactory(allocation=second, scheduled_date=DAY, starts_at=starts_at)
    else:
        SessionFactory(allocation=second, scheduled_date=DAY, starts_at=starts_at)


def test_a_session_ends_after_it_starts():
    session = SessionFactory.build(allocation=AllocationFactory(), scheduled_date=DAY)
    session.ends_at = session.starts_at
    with pytest.raises(IntegrityError, match="session_ends_after_it_starts"), transaction.atomic():
        session.save()


def test_a_cancelled_session_frees_the_trainer():
    trainer = TrainerFactory()
    first = AllocationFactory(trainer=trainer, slot_time=slot_time(0))
    second = AllocationFactory(trainer=trainer, slot_time=slot_time(1))
    cancelled = SessionFactory(allocation=first, scheduled_date=DAY, status=TrainingSession.Status.CANCELLED)
    SessionFactory(allocation=second, scheduled_date=DAY, starts_at=cancelled.starts_at)
    assert TrainingSession.objects.filter(starts_at=cancelled.starts_at).count() == 2


def _checked_now() -> None:
    """The session keys are deferred to commit, which a test's transaction never reaches: check them at once."""
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS session_allocation_trainer_fk IMMEDIATE")


def test_a_session_is_booked_in_its_allocations_trainers_time_only():
    allocation, other_trainer = AllocationFactory(), TrainerFactory()
    with pytest.raises(IntegrityError, match="session_allocation_trainer_fk"), transaction.atomic():
        _checked_now()
        SessionFactory(allocation=allocation, trainer=other_trainer, scheduled_date=DAY)
    with transaction.atomic():
        _checked_now()
        SessionFactory(allocation=allocation, scheduled_date=DAY)


def test_a_session_needs_its_allocation_and_keeps_it():
    session = SessionFactory(scheduled_date=DAY)
    with pytest.raises(IntegrityError, match="session_allocation_trainer_fk"), transaction.atomic():
        _checked_now()
        with connection.cursor() as cur:
            cur.execute("DELETE FROM trainer_allocations WHERE id = %s", [session.allocation_id])
    with pytest.raises(IntegrityError, match="session_allocation_trainer_fk"), transaction.atomic():
        _checked_now()
        with connection.cursor() as cur:
            cur.execute("UPDATE training_sessions SET allocation_id = allocation_id + 1000000 WHERE id = %s",
                        [session.pk])
