"""Trainer time in UTC: a new allocation's start time is free across all of the trainer's courses, time zones
and session lengths, DST changes included, and its 7 sessions then book without a collision."""
import datetime

import pytest
from django.db import transaction

from allocations.slots import Booking, candidate_starts, collide, free_start
from sessions_sched.models import TrainingSession
from sessions_sched.scheduler import ensure_window
from tests.allocations.support import allocate_bought
from tests.factories import CourseFactory, StudentFactory, TrainerFactory

WEEKDAYS = frozenset(range(5))
TODAY = datetime.date(2026, 12, 1)  # the horizon then covers both 2027 DST changes of Europe and America


def at(hour, minute=0):
    return datetime.time(hour, minute)


def test_free_start_is_the_first_candidate_that_collides_with_no_booking():
    """free_start splits the bookings by zone once per call; it must answer as `collide` per pair does, whatever
    mix of zones, lengths and weekdays a trainer has."""
    import random

    rng = random.Random(19)
    zones = ["Europe/Berlin", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
    day_sets = [WEEKDAYS, frozenset({0, 2, 4}), frozenset({1, 3})]
    monday = TODAY - datetime.timedelta(days=TODAY.weekday())
    for _ in range(300):
        taken = [Booking(rng.choice(zones), at(rng.randrange(6, 20), rng.choice((0, 30))), rng.choice((45, 60, 90)),
                         rng.choice(day_sets)) for _ in range(rng.randrange(0, 9))]
        zone, minutes, days = rng.choice(zones), rng.choice((45, 60, 90)), rng.choice(day_sets)
        expected = next((start for start in candidate_starts(minutes)
                         if not any(collide(Booking(zone, start, minutes, days), other, monday) for other in taken)),
                        None)
        assert free_start(zone, minutes, days, taken, TODAY) == expected, (zone, minutes, days, taken)


def test_the_same_instant_in_two_zones_collides():
    berlin = Booking("Europe/Berlin", at(9), 60, WEEKDAYS)
    assert collide(Booking("Europe/London", at(8), 60, WEEKDAYS), berlin, TODAY)  # 08:00 London = 09:00 Berlin
    assert not collide(Booking("Europe/London", at(9), 60, WEEKDAYS), berlin, TODAY)
    assert free_start("Europe/London", 60, WEEKDAYS, [berlin], TODAY) == at(9)


def test_session_length_counts():
    ninety = Booking("Europe/Berlin", at(8), 90, WEEKDAYS)
    assert collide(Booking("Europe/Berlin", at(9), 60, WEEKDAYS), ninety, TODAY)
    assert free_start("Europe/Berlin", 90, WEEKDAYS, [ninety], TODAY) == at(9, 30)


def test_zones_that_change_clocks_on_different_dates_collide_in_the_weeks_between():
    """Berlin 13:00 and New York 08:00 are an hour apart in winter and in summer, but the same instant in the
    weeks of March when America has moved its clocks and Europe not yet (12:00 UTC)."""
    berlin = Booking("Europe/Berlin", at(13), 60, WEEKDAYS)
    assert collide(Booking("America/New_York", at(8), 60, WEEKDAYS), berlin, TODAY)
    assert free_start("America/New_York", 60, WEEKDAYS, [berlin], TODAY) == at(9)


def test_a_day_with_no_free_start_gives_none():
    taken = [Booking("UTC", datetime.time(h), 60, WEEKDAYS) for h in range(8, 20)]
    assert free_start("UTC", 60, WEEKDAYS, taken, TODAY) is None


@pytest.mark.django_db
def test_a_trainer_of_a_berlin_and_a_london_course_gets_both_students_their_7_sessions():
    berlin = CourseFactory(time_zone="Europe/Berlin", session_minutes=90)
    london = CourseFactory(time_zone="Europe/London", session_minutes=60)
    trainer = TrainerFactory(courses=[berlin, london], capacity=5)
    first, _ = allocate_bought(StudentFactory().pk, berlin.pk)
    second, _ = allocate_bought(StudentFactory().pk, london.pk)
    assert (first.trainer_id, second.trainer_id) == (trainer.pk, trainer.pk)
    assert (first.slot_time, second.slot_time) == (at(8), at(8, 30))  # 08:30 London = 09:30 Berlin, after 08:00-09:30
    with transaction.atomic():
        assert (ensure_window(first), ensure_window(second)) == (7, 7)
    sessions = sorted(TrainingSession.objects.filter(trainer=trainer), key=lambda s: s.starts_at)
    assert len(sessions) == 14
    for earlier, later in zip(sessions, sessions[1:]):
        assert earlier.ends_at <= later.starts_at  # intervals, not only start instants
