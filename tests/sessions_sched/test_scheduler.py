"""The rolling window: weekdays in the course's zone, DST, exactly 7 future sessions, top-ups that never duplicate."""
import datetime
import threading
import zoneinfo
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from allocations.models import TrainerAllocation, slot_time
from sessions_sched.models import TrainingSession
from sessions_sched.scheduler import (
    ensure_window,
    local_to_utc,
    next_session_slots,
    topup_all,
)
from tests.concurrency import run_in_threads
from tests.factories import (
    AllocationFactory,
    CourseFactory,
    SessionFactory,
    TrainerFactory,
)

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NINE = slot_time(1)  # 09:00
# Wednesday 2030-01-09, 09:00 in Berlin: exactly the slot of that day, which is therefore not in the future.
WED_0900_BERLIN = datetime.datetime(2030, 1, 9, 8, 0, tzinfo=UTC)


def d(day):
    return datetime.date.fromisoformat(day)


def dates(slots):
    return [slot[0] for slot in slots]


@pytest.mark.django_db
class TestNextSessionSlots:
    def test_weekdays_only_strictly_in_the_future_in_the_course_zone(self):
        allocation = AllocationFactory(slot_time=NINE)
        slots = next_session_slots(allocation, WED_0900_BERLIN, 7)
        assert dates(slots) == [d("2030-01-10"), d("2030-01-11"), d("2030-01-14"), d("2030-01-15"),
                                d("2030-01-16"), d("2030-01-17"), d("2030-01-18")]
        assert all(day.weekday() < 5 and at == NINE for day, at, _ in slots)
        assert slots[0][2] == datetime.datetime(2030, 1, 10, 8, 0, tzinfo=UTC)
        just_before = WED_0900_BERLIN - datetime.timedelta(seconds=1)
        assert next_session_slots(allocation, just_before, 1)[0][0] == d("2030-01-09")

    def test_only_the_allocation_weekdays_and_never_a_weekend_day(self):
        allocation = AllocationFactory(slot_time=NINE, slot_weekdays=[0, 2])
        assert [day.weekday() for day in dates(next_session_slots(allocation, WED_0900_BERLIN, 4))] == [0, 2, 0, 2]
        allocation.slot_weekdays = [5, 6]  # the database refuses this; the scheduler must not loop forever on it
        assert next_session_slots(allocation, WED_0900_BERLIN, 7) == []

    def test_weekday_is_decided_in_the_course_zone_not_in_utc(self):
        allocation = AllocationFactory(slot_time=NINE, course=CourseFactory(time_zone="Pacific/Auckland"))
        friday_evening_utc = datetime.datetime(2030, 1, 11, 20, 0, tzinfo=UTC)  # Saturday 09:00 in Auckland
        first = next_session_slots(allocation, friday_evening_utc, 1)[0]
        assert first[0] == d("2030-01-14") and first[0].weekday() == 0  # Monday in Auckland...
        assert first[2] == datetime.datetime(2030, 1, 13, 20, 0, tzinfo=UTC)  # ...which is Sunday in UTC

    def test_across_the_spring_dst_change_the_local_time_stays_and_the_utc_hour_moves(self):
        # Berlin leaves CET (UTC+1) for CEST (UTC+2) on Sunday 2030-03-31.
        allocation = AllocationFactory(slot_time=NINE)
        slots = next_session_slots(allocation, datetime.datetime(2030, 3, 27, 12, 0, tzinfo=UTC), 4)
        assert dates(slots) == [d("2030-03-28"), d("2030-03-29"), d("2030-04-01"), d("2030-04-02")]
        assert [at for _, at, _ in slots] == [NINE] * 4
        assert [starts.hour for _, _, starts in slots] == [8, 8, 7, 7]
        assert all(starts.astimezone(BERLIN).hour == 9 for _, _, starts in slots)

    def test_across_the_autumn_dst_change(self):
        allocation = AllocationFactory(slot_time=NINE)
        slots = next_session_slots(allocation, datetime.datetime(2030, 10, 24, 12, 0, tzinfo=UTC), 3)
        assert dates(slots) == [d("2030-10-25"), d("2030-10-28"), d("2030-10-29")]
        assert [starts.hour for _, _, starts in slots] == [7, 8, 8]


def test_a_local_time_in_the_spring_gap_moves_forward_and_an_ambiguous_one_is_the_first():
    local, starts = local_to_utc(d("2030-03-31"), datetime.time(2, 30), BERLIN)  # 02:00-03:00 does not exist
    assert (local.time(), starts) == (datetime.time(3, 30), datetime.datetime(2030, 3, 31, 1, 30, tzinfo=UTC))
    local, starts = local_to_utc(d("2030-10-27"), datetime.time(2, 30), BERLIN)  # 02:00-03:00 happens twice
    assert (local.time(), starts) == (datetime.time(2, 30), datetime.datetime(2030, 10, 27, 0, 30, tzinfo=UTC))


def future(allocation, now):
    return TrainingSession.objects.filter(allocation=allocation, starts_at__gt=now, status="scheduled")


@pytest.mark.django_db
class TestEnsureWindow:
    def test_creates_exactly_seven_future_weekday_sessions_once(self):
        allocation = AllocationFactory(slot_time=NINE)
        assert ensure_window(allocation, now=WED_0900_BERLIN) == 7
        assert ensure_window(allocation, now=WED_0900_BERLIN) == 0
        sessions = list(future(allocation, WED_0900_BERLIN).order_by("starts_at"))
        assert len(sessions) == 7 == TrainingSession.objects.count()
        assert all(s.scheduled_date.weekday() < 5 and s.scheduled_time == NINE for s in sessions)
        assert all(s.trainer_id == allocation.trainer_id for s in sessions)
        assert all(s.starts_at.astimezone(BERLIN).replace(tzinfo=None)
                   == datetime.datetime.combine(s.scheduled_date, s.scheduled_time) for s in sessions)

    def test_the_window_rolls_after_the_last_session_without_duplicates(self):
        allocation = AllocationFactory(slot_time=NINE)
        ensure_window(allocation, now=WED_0900_BERLIN)
        later = WED_0900_BERLIN + datetime.timedelta(days=5)  # Monday 09:00: Thu, Fri and Mon are past
        assert future(allocation, later).count() == 4
        assert ensure_window(allocation, now=later) == 3
        all_dates = list(TrainingSession.objects.order_by("scheduled_date").values_list("scheduled_date", flat=True))
        assert len(all_dates) == len(set(all_dates)) == 10
        assert all_dates[-3:] == [d("2030-01-21"), d("2030-01-22"), d("2030-01-23")]
        assert future(allocation, later).count() == 7

    def test_an_allocation_that_no_longer_holds_its_slot_gets_nothing(self):
        allocation = AllocationFactory(status=TrainerAllocation.Status.ENDED)
        assert ensure_window(allocation, now=WED_0900_BERLIN) == 0

    def test_sessions_colliding_with_another_booking_of_the_trainer_are_skipped_not_an_error(self):
        """Same trainer, 14:00 in Berlin and 13:00 in London are the same instants: the UNIQUE (trainer,
        starts_at) constraint refuses those sessions; the window takes the next free ones instead of failing."""
        trainer = TrainerFactory()
        berlin = AllocationFactory(trainer=trainer, slot_time=slot_time(6))
        london = AllocationFactory(trainer=trainer, slot_time=slot_time(5),
                                   course=CourseFactory(time_zone="Europe/London"))
        assert ensure_window(berlin, now=WED_0900_BERLIN) == 7
        assert ensure_window(london, now=WED_0900_BERLIN) == 7
        instants = list(TrainingSession.objects.values_list("starts_at", flat=True))
        assert len(instants) == len(set(instants)) == 14
        first_london = future(london, WED_0900_BERLIN).order_by("starts_at").first()
        assert first_london.starts_at > future(berlin, WED_0900_BERLIN).order_by("-starts_at").first().starts_at


@pytest.mark.django_db
class TestTopupAll:
    def test_tops_up_allocations_below_the_threshold_and_nothing_twice(self):
        empty = AllocationFactory(slot_time=NINE)
        low = AllocationFactory(slot_time=NINE)
        ensure_window(low, now=WED_0900_BERLIN, size=2)
        enough = AllocationFactory(slot_time=NINE)
        ensure_window(enough, now=WED_0900_BERLIN, size=3)
        AllocationFactory(status=TrainerAllocation.Status.ENDED)
        report = topup_all(threshold=3, size=7, now=WED_0900_BERLIN)
        assert report.as_dict() == {"active": 3, "below_threshold": 2, "topped_up": 2, "skipped_locked": 0,
                                    "sessions_created": 12}
        assert [future(a, WED_0900_BERLIN).count() for a in (empty, low, enough)] == [7, 7, 3]
        again = topup_all(threshold=3, size=7, now=WED_0900_BERLIN)
        assert (again.below_threshold, again.sessions_created) == (0, 0)

    def test_past_and_cancelled_sessions_do_not_count(self):
        allocation = AllocationFactory(slot_time=NINE)
        SessionFactory(allocation=allocation, scheduled_date=d("2030-01-08"),
                       starts_at=datetime.datetime(2030, 1, 8, 8, 0, tzinfo=UTC))
        SessionFactory(allocation=allocation, scheduled_date=d("2030-01-10"), status="cancelled",
                       starts_at=datetime.datetime(2030, 1, 10, 8, 0, tzinfo=UTC))
        assert topup_all(now=WED_0900_BERLIN).sessions_created == 7
        assert future(allocation, WED_0900_BERLIN).count() == 7

    def test_command_prints_what_it_did(self):
        AllocationFactory()
        out = StringIO()
        call_command("topup_sessions", stdout=out)
        assert "active allocations checked: 1" in out.getvalue()
        assert "topped up: 1; sessions created: 7" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_topup_runs_create_each_session_once():
    allocations = [AllocationFactory(slot_time=slot_time(i % 10)) for i in range(12)]
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def run():
        try:
            barrier.wait()
            reports.append(topup_all(now=WED_0900_BERLIN))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    run_in_threads(run, 2)
    assert not errors
    assert sum(r.sessions_created for r in reports) == 7 * len(allocations) == TrainingSession.objects.count()
    assert all(future(a, WED_0900_BERLIN).count() == 7 for a in allocations)
