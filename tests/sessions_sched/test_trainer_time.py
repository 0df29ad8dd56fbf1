"""Trainer time held by the database's triggers (sessions_sched.booking): concurrent writers, updates, isolation,
and `book_free`, which books around collisions instead of failing."""
import datetime
import threading

import pytest
from django.db import IntegrityError, NotSupportedError, connection, transaction

from allocations.models import slot_time
from sessions_sched.booking import SessionRow, book_free, free_rows
from sessions_sched.models import TrainingSession
from tests.factories import AllocationFactory, CourseFactory, SessionFactory, TrainerFactory
from tests.purchases.locks import wait_until_blocked_on_a_lock

DAY = datetime.date(2030, 1, 7)
NINE = datetime.datetime(2030, 1, 7, 9, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


def _two_allocations_of_one_trainer():
    trainer = TrainerFactory()
    course = CourseFactory(session_minutes=60)
    return (AllocationFactory(trainer=trainer, course=course, slot_time=slot_time(0)),
            AllocationFactory(trainer=trainer, course=course, slot_time=slot_time(1)))


def _session(allocation, starts_at, **fields) -> TrainingSession:
    return SessionFactory(allocation=allocation, scheduled_date=starts_at.date(), starts_at=starts_at,
                          ends_at=starts_at + HOUR, **fields)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("offset,overlaps", [(datetime.timedelta(minutes=30), True), (HOUR, False)])
def test_a_second_writer_waits_for_the_first_and_then_sees_its_booking(offset, overlaps):
    """The first writer's session is not committed when the second writes its own: the second waits on the
    trainer's time lock (seen waiting), and once the first commits it is refused if the two overlap, and booked if
    they do not. Without the lock the second would see nothing and both would hold the trainer at once."""
    first, second = _two_allocations_of_one_trainer()
    first_wrote, outcome = threading.Event(), {}

    def first_writer():
        try:
            with transaction.atomic():
                _session(first, NINE)
                first_wrote.set()
                wait_until_blocked_on_a_lock()  # the second writer waits for us
        except AssertionError as exc:
            outcome["first"] = str(exc)
        finally:
            connection.close()

    def second_writer():
        first_wrote.wait(10)
        try:
            with transaction.atomic():
                _session(second, NINE + offset)
            outcome["booked"] = True
        except IntegrityError as exc:
            outcome["refused"] = str(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first_writer), threading.Thread(target=second_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert "first" not in outcome  # the second writer was seen waiting
    if overlaps:
        assert "no_overlapping_trainer_sessions" in outcome["refused"]
        assert TrainingSession.objects.filter(trainer=first.trainer).count() == 1
    else:
        assert outcome == {"booked": True}
        assert TrainingSession.objects.filter(trainer=first.trainer).count() == 2


@pytest.mark.django_db
def test_an_update_into_a_booked_time_is_refused():
    first, second = _two_allocations_of_one_trainer()
    _session(first, NINE)
    later = _session(second, NINE + 2 * HOUR)
    with pytest.raises(IntegrityError, match="no_overlapping_trainer_sessions"), transaction.atomic():
        TrainingSession.objects.filter(pk=later.pk).update(starts_at=NINE + HOUR / 2, ends_at=NINE + 3 * HOUR / 2)
    TrainingSession.objects.filter(pk=later.pk).update(starts_at=NINE + HOUR, ends_at=NINE + 2 * HOUR)  # touching


@pytest.mark.django_db
def test_a_cancelled_session_cannot_come_back_over_a_booking():
    first, second = _two_allocations_of_one_trainer()
    cancelled = _session(first, NINE, status=TrainingSession.Status.CANCELLED)
    _session(second, NINE)
    with pytest.raises(IntegrityError, match="no_overlapping_trainer_sessions"), transaction.atomic():
        TrainingSession.objects.filter(pk=cancelled.pk).update(status=TrainingSession.Status.SCHEDULED)
    TrainingSession.objects.filter(pk=cancelled.pk).update(ends_at=NINE + HOUR / 2)  # still cancelled: free time


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_sessions_are_written_under_read_committed_only(level):
    """Under a snapshot taken before the lock, the check could miss a booking committed while it waited."""
    allocation = AllocationFactory()
    with pytest.raises(NotSupportedError, match="READ COMMITTED only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
        _session(allocation, NINE)
    assert not TrainingSession.objects.exists()


@pytest.mark.django_db
def test_a_session_lasts_at_most_a_day():
    """The overlap check reads bookings that start at most a day before: a longer one could hide from it."""
    allocation = AllocationFactory()
    with pytest.raises(IntegrityError, match="session_at_most_a_day"), transaction.atomic():
        SessionFactory(allocation=allocation, scheduled_date=DAY, starts_at=NINE,
                       ends_at=NINE + datetime.timedelta(hours=24, minutes=1))
    SessionFactory(allocation=allocation, scheduled_date=DAY, starts_at=NINE,
                   ends_at=NINE + datetime.timedelta(hours=24))


def _row(allocation_id, trainer_id, starts_at, length=HOUR) -> SessionRow:
    return SessionRow(allocation_id, trainer_id, starts_at.date(), starts_at.time(), starts_at, starts_at + length)


def test_free_rows_keeps_the_first_of_overlapping_rows_and_nothing_over_a_booking():
    booked = [(1, NINE, NINE + HOUR)]
    rows = [
        _row(10, 1, NINE + HOUR / 2),  # over the booking
        _row(11, 1, NINE + HOUR),  # starts as the booking ends: free
        _row(12, 1, NINE + 3 * HOUR / 2),  # over row 11, kept first
        _row(13, 2, NINE),  # another trainer
        _row(14, 1, NINE + 2 * HOUR),  # starts as row 11 ends; row 12 was left out
    ]
    assert [row.allocation_id for row in free_rows(rows, booked)] == [11, 13, 14]


@pytest.mark.django_db
def test_book_free_inserts_what_collides_with_nothing():
    first, second = _two_allocations_of_one_trainer()
    existing = _session(first, NINE)
    other = AllocationFactory()
    rows = [
        _row(second.pk, second.trainer_id, NINE),  # the trainer is booked
        _row(first.pk, first.trainer_id, NINE),  # this very session exists
        _row(second.pk, second.trainer_id, NINE + HOUR),
        _row(first.pk, first.trainer_id, NINE + 3 * HOUR / 2),  # over the row before
        _row(other.pk, other.trainer_id, NINE),
    ]
    with transaction.atomic():
        assert sorted(book_free(rows)) == sorted([second.pk, other.pk])
    assert set(TrainingSession.objects.values_list("allocation_id", "starts_at")) == {
        (first.pk, existing.starts_at), (second.pk, NINE + HOUR), (other.pk, NINE)}
    assert book_free([]) == []
