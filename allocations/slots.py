"""Where in a trainer's week a new allocation fits: a start time whose sessions never overlap, in UTC, any
session of the trainer's other holding allocations, whatever their course's time zone and session length,
across DST changes too.

An allocation books the same local time on its weekdays in its course's zone, for as long as it holds. Two
allocations of one zone (and weekdays) collide exactly when their local intervals overlap. Across zones the
UTC offsets move, and on different dates (Europe and America change a few weeks apart; London's summer time is
Berlin's winter offset), so both allocations are expanded into the UTC intervals of their sessions over the
next year (every DST regime) and compared. The sessions table has the last word: its triggers refuse
overlapping bookings of a trainer (sessions_sched.booking).
"""
from __future__ import annotations

import datetime
import functools
import zoneinfo
from collections.abc import Iterable
from typing import NamedTuple

from allocations.models import TrainerAllocation
from workers.sql import fetch

FIRST_START = datetime.time(8, 0)  # the day's first session starts here, local time
LAST_END = datetime.time(20, 0)  # and the last one ends by here
STEP_MINUTES = 30  # candidate start times, from FIRST_START on
HORIZON_DAYS = 371  # a year and a week: every DST regime of every zone


class Booking(NamedTuple):
    """The weekly pattern of an allocation: local start time, length and weekdays, in its course's zone."""

    time_zone: str
    start: datetime.time
    minutes: int
    weekdays: frozenset[int]


def _minutes(at: datetime.time) -> int:
    return at.hour * 60 + at.minute


@functools.lru_cache(maxsize=8192)
def utc_intervals(booking: Booking, from_day: datetime.date) -> tuple[tuple[int, int], ...]:
    """(start, end) of every session of `booking` over the horizon, in UTC minutes since `from_day` 00:00 UTC,
    in order."""
    tz = zoneinfo.ZoneInfo(booking.time_zone)
    origin = datetime.datetime.combine(from_day, datetime.time(0), tzinfo=datetime.UTC)
    intervals = []
    for offset in range(HORIZON_DAYS):
        day = from_day + datetime.timedelta(days=offset)
        if day.weekday() not in booking.weekdays:
            continue
        starts = datetime.datetime.combine(day, booking.start, tzinfo=tz).replace(fold=0)
        start = int((starts - origin).total_seconds()) // 60
        intervals.append((start, start + booking.minutes))
    return tuple(intervals)


def _local_span(booking: Booking) -> tuple[int, int]:
    """(start, end) of a booking's sessions in local minutes of the day."""
    begins = _minutes(booking.start)
    return begins, begins + booking.minutes


def _same_week(a: Booking, b: Booking) -> bool:
    """Same zone and weekdays: the two collide exactly when their local spans overlap."""
    return a.time_zone == b.time_zone and a.weekdays == b.weekdays


def collide(a: Booking, b: Booking, from_day: datetime.date) -> bool:
    """Whether some session of `a` and some session of `b` would overlap in time."""
    if _same_week(a, b):
        (start_a, end_a), (start_b, end_b) = _local_span(a), _local_span(b)
        return start_a < end_b and start_b < end_a
    return _collide_in_utc(a, b, from_day)


@functools.lru_cache(maxsize=8192)  # at most ~2.5 MB (tracemalloc, 8192 pairs of distinct Bookings)
def _collide_in_utc(a: Booking, b: Booking, from_day: datetime.date) -> bool:
    """`collide` across zones or weekdays: a merge of a year of both bookings' UTC intervals (~260 each). Cached:
    a week has few distinct bookings (zones x start times x lengths x weekdays), and the allocation API asks the
    same pairs for every request of a batch; the merge was 9% of its CPU end to end (py-spy)."""
    ours, theirs = utc_intervals(a, from_day), utc_intervals(b, from_day)
    i = j = 0
    while i < len(ours) and j < len(theirs):  # both in order: one merge pass
        (start_a, end_a), (start_b, end_b) = ours[i], theirs[j]
        if start_a < end_b and start_b < end_a:
            return True
        if end_a <= end_b:
            i += 1
        else:
            j += 1
    return False


@functools.cache
def candidate_starts(minutes: int) -> tuple[datetime.time, ...]:
    """The local start times a session of `minutes` may have, earliest first. Cached: `free_start` asks for
    every allocation it plans, and building them was 14 % of the allocation API's CPU (py-spy, end to end)."""
    last = _minutes(LAST_END) - minutes
    return tuple(datetime.time(m // 60, m % 60) for m in range(_minutes(FIRST_START), last + 1, STEP_MINUTES))


def free_start(
    time_zone: str, minutes: int, weekdays: Iterable[int], taken: Iterable[Booking], today: datetime.date
) -> datetime.time | None:
    """The earliest local start time for a new allocation that collides with none of `taken`, or None.

    `collide` for every candidate and booking, split once per call: bookings of the same zone and weekdays are
    compared as local minutes, the others through the cached UTC comparison. (Calling `collide` per pair was
    a fifth of the allocation API's CPU end to end.)"""
    from_day = today - datetime.timedelta(days=today.weekday())  # the week's Monday: shared by the cache
    days = frozenset(weekdays)
    week = Booking(time_zone, FIRST_START, minutes, days)  # its zone and weekdays sort `taken`
    local: list[tuple[int, int]] = []
    elsewhere: list[Booking] = []
    for other in taken:
        if _same_week(week, other):
            local.append(_local_span(other))
        else:
            elsewhere.append(other)
    for start in candidate_starts(minutes):
        booking = Booking(time_zone, start, minutes, days)
        begins, ends = _local_span(booking)
        if any(begins < other_ends and other_begins < ends for other_begins, other_ends in local):
            continue
        if not any(_collide_in_utc(booking, other, from_day) for other in elsewhere):
            return start
    return None


TAKEN_SQL = """
SELECT a.trainer_id, c.time_zone, a.slot_time, c.session_minutes, a.slot_weekdays
FROM trainer_allocations a JOIN courses c ON c.id = a.course_id
WHERE a.trainer_id = ANY(%b::bigint[]) AND a.status = ANY(%b::text[])
"""


def taken_by(trainer_ids: list[int]) -> dict[int, list[Booking]]:
    """The weekly bookings of the trainers' holding allocations, every course of theirs (read under their locks:
    authoritative)."""
    taken: dict[int, list[Booking]] = {pk: [] for pk in trainer_ids}
    rows = fetch(TAKEN_SQL, [trainer_ids, list(TrainerAllocation.HOLDING_STATUSES)])
    for trainer_id, zone, at, minutes, weekdays in rows:
        taken[trainer_id].append(Booking(zone, at, minutes, frozenset(weekdays or ())))
    return taken
