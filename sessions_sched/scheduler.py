"""The rolling window: every active allocation keeps its next 7 weekday sessions scheduled.

Time: "weekday" and "future" are decided in the course's time zone (zoneinfo), and each session also stores its
UTC instant, so across a DST change the local time stays (09:00) while the UTC hour moves by one.
A local time that does not exist (spring-forward gap) or exists twice (fall-back overlap) is read with fold=0,
i.e. with the offset in force *before* the transition, then normalized through a UTC round trip: 02:30 in a
02:00->03:00 gap becomes 03:30 local (stored as such), an ambiguous 02:30 is the first (summer-time) one.
Slots start at 08:00, so in most zones this never happens; it is handled so that it cannot break.

Concurrency: a window is changed only under the allocation's row lock (FOR NO KEY UPDATE, which does not block
the FK checks of session inserts), and `topup_all` skips allocations another run holds (SKIP LOCKED); the UNIQUE
(allocation, date, time) constraint is the last word (`ON CONFLICT DO NOTHING`). A trainer's other bookings are
skipped, not an error: `sessions_sched.booking.book_free` takes the trainers' time locks and leaves out what
collides.
"""
from __future__ import annotations

import collections
import datetime
import functools
import logging
import zoneinfo
from dataclasses import asdict, dataclass

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from allocations.models import TrainerAllocation
from sessions_sched.booking import SessionRow, book_free
from sessions_sched.models import TrainingSession
from workers.sql import fetch, fetch_skipping_conflicts

log = logging.getLogger(__name__)

WINDOW_SIZE = 7
TOPUP_THRESHOLD = 3
WEEKDAYS = frozenset(range(5))  # Monday..Friday
MAX_ROUNDS = 4  # extra rounds when some candidate sessions collide with another booking of the trainer

SessionSlot = tuple[datetime.date, datetime.time, datetime.datetime]


def local_to_utc(
    day: datetime.date, at: datetime.time, tz: zoneinfo.ZoneInfo
) -> tuple[datetime.datetime, datetime.datetime]:
    """(normalized local datetime, UTC datetime) of a wall-clock time in `tz` (fold=0, see module doc)."""
    starts_at = datetime.datetime.combine(day, at, tzinfo=tz).replace(fold=0).astimezone(datetime.UTC)
    return starts_at.astimezone(tz), starts_at


def next_session_slots(allocation: TrainerAllocation, now: datetime.datetime, count: int) -> list[SessionSlot]:
    """The next `count` sessions strictly after `now`: (local date, local time, UTC start), on the allocation's
    weekdays (Monday..Friday only) at its slot time, in the course's time zone."""
    return list(_slots(allocation.course.time_zone, allocation.slot_time, frozenset(allocation.slot_weekdays or ()),
                       now, count))


@functools.lru_cache(maxsize=4096)
def _slots(
    time_zone: str, slot_time: datetime.time, weekdays: frozenset[int], now: datetime.datetime, count: int
) -> tuple[SessionSlot, ...]:
    """Cached: a batch of new allocations shares `now`, and its allocations share a few (zone, time, days)."""
    days = weekdays & WEEKDAYS
    if count <= 0 or not days:
        return ()
    tz = zoneinfo.ZoneInfo(time_zone)
    day = now.astimezone(tz).date()
    slots: list[SessionSlot] = []
    while len(slots) < count:
        if day.weekday() in days:
            local, starts_at = local_to_utc(day, slot_time, tz)
            if starts_at > now:
                slots.append((local.date(), local.time(), starts_at))
        day += datetime.timedelta(days=1)
    return tuple(slots)


def _future(allocation_id: int, now: datetime.datetime):
    return TrainingSession.objects.filter(
        allocation_id=allocation_id, status=TrainingSession.Status.SCHEDULED, starts_at__gt=now
    )


def ensure_window(allocation: TrainerAllocation, now: datetime.datetime | None = None, size: int = WINDOW_SIZE) -> int:
    """Make sure the allocation has `size` future scheduled sessions; returns how many were created.

    New sessions go after the last existing future one (the window rolls, it never fills holes before it).
    An allocation that no longer holds its slot (ended, cancelled) gets nothing.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            TrainerAllocation.objects.select_for_update(no_key=True)
            .select_related("course")
            .filter(pk=allocation.pk, status__in=TrainerAllocation.HOLDING_STATUSES)
            .first()
        )
        if locked is None:
            return 0
        future = _future(locked.pk, now)
        have = future.count()
        if have >= size:
            return 0
        last = future.order_by("-starts_at").values_list("starts_at", flat=True).first()
        start = max(now, last) if last else now
        created = 0
        length = datetime.timedelta(minutes=locked.course.session_minutes)
        for _ in range(MAX_ROUNDS):
            slots = next_session_slots(locked, start, size - have - created)
            if not slots:
                break
            book_free([SessionRow(locked.pk, locked.trainer_id, day, at, starts_at, starts_at + length)
                       for day, at, starts_at in slots])
            # Exact under the row lock: nobody else adds sessions to this allocation meanwhile.
            created = future.count() - have
            start = slots[-1][2]
            if have + created >= size:
                break
        if have + created < size:
            log.warning(
                "could not fill the session window: slots collide with other bookings of the trainer",
                extra={"allocation_id": locked.pk, "future_sessions": have + created},
            )
        return created


LOCK_ALLOCATIONS_SQL = """
SELECT a.id, a.trainer_id, a.slot_time, a.slot_weekdays, c.time_zone, c.session_minutes
FROM trainer_allocations a JOIN courses c ON c.id = a.course_id
WHERE a.id = ANY(%b::bigint[]) AND a.status = ANY(%b::text[])
ORDER BY a.id
FOR NO KEY UPDATE OF a
"""
FUTURE_SESSIONS_SQL = """
SELECT allocation_id, count(*), max(starts_at) FROM training_sessions
WHERE allocation_id = ANY(%b::bigint[]) AND status = 'scheduled' AND starts_at > %s
GROUP BY allocation_id
"""


INSERT_SESSIONS_SQL = """
INSERT INTO training_sessions (allocation_id, trainer_id, scheduled_date, scheduled_time, starts_at, ends_at, status,
                               created_at)
SELECT a.id, a.trainer_id, s.day, s.at, s.starts_at, s.starts_at + make_interval(mins => a.minutes), 'scheduled',
       clock_timestamp()
FROM unnest(%b::bigint[], %b::bigint[], %b::int[], %b::int[]) AS a(id, trainer_id, pattern, minutes)
JOIN unnest(%b::int[], %b::date[], %b::time[], %b::timestamptz[]) AS s(pattern, day, at, starts_at) USING (pattern)
"""


@dataclass(frozen=True)
class WindowFill:
    created: int  # sessions created now
    future: int  # future scheduled sessions afterwards


def fill_windows(allocation_ids: list[int], now: datetime.datetime, size: int = WINDOW_SIZE) -> dict[int, WindowFill]:
    """`ensure_window` for many allocations in three statements (the sessions stage's batch path): lock the
    holding allocations, read their future sessions in one grouped query, insert every missing session in one
    INSERT (INSERT_SESSIONS_SQL) whose RETURNING says what was created. Under the locks those counts are exact.
    An allocation whose candidate sessions collided with another booking of its trainer (a trainer teaching
    courses in several time zones) gets its window finished by `ensure_window`, which takes further rounds of
    dates, under the lock already held. Returns, per holding allocation that needed sessions, what was created
    and the future count."""
    locked = fetch(LOCK_ALLOCATIONS_SQL, [allocation_ids, list(TrainerAllocation.HOLDING_STATUSES)])
    before = {pk: (n, last) for pk, n, last in fetch(FUTURE_SESSIONS_SQL, [[row[0] for row in locked], now])}
    wanted: dict[int, tuple[int, int]] = {}  # pk -> (future sessions before, missing)
    # Allocations share their dates: one "pattern" (the slots of a zone, time, weekdays and start) is sent once,
    # and each allocation names its pattern, so the statement carries ~10x fewer values than one row per session.
    patterns: dict[tuple, int] = {}
    allocations: dict[str, list] = {"id": [], "trainer_id": [], "pattern": [], "minutes": []}
    for pk, trainer_id, slot_time, weekdays, time_zone, minutes in locked:
        have, last = before.get(pk, (0, None))
        if have >= size:
            continue
        wanted[pk] = (have, size - have)
        key = (time_zone, slot_time, frozenset(weekdays or ()), max(now, last) if last else now, size - have)
        allocations["id"].append(pk)
        allocations["trainer_id"].append(trainer_id)
        allocations["pattern"].append(patterns.setdefault(key, len(patterns)))
        allocations["minutes"].append(minutes)
    if not wanted:
        return {}
    created = _insert_sessions(allocations, [_slots(*key) for key in patterns])
    result = {}
    for pk, (have, missing) in wanted.items():
        n = created[pk]
        if n < missing:  # collisions with the trainer's other bookings: more rounds of dates, one allocation
            allocation = TrainerAllocation.objects.select_related("course").get(pk=pk)
            n += ensure_window(allocation, now=now, size=size)
        result[pk] = WindowFill(created=n, future=have + n)
    return result


def _insert_sessions(allocations: dict[str, list], pattern_slots: list[tuple[SessionSlot, ...]]) -> collections.Counter:
    """Insert every allocation's sessions (its pattern's slots) in one plain INSERT, as collisions are rare; when
    one refuses a row (a booking of the trainer overlaps, or the session exists), `book_free` inserts those that
    collide with nothing. Returns how many sessions each allocation got."""
    slots: dict[str, list] = {"pattern": [], "day": [], "at": [], "starts_at": []}
    for number, dates in enumerate(pattern_slots):
        for day, at, starts_at in dates:
            for column, value in zip(slots, (number, day, at, starts_at)):
                slots[column].append(value)

    def book_around_collisions() -> list[tuple]:
        return [(pk,) for pk in book_free([
            SessionRow(pk, trainer_id, day, at, starts_at, starts_at + datetime.timedelta(minutes=minutes))
            for pk, trainer_id, number, minutes in zip(*allocations.values())
            for day, at, starts_at in pattern_slots[number]])]

    rows = fetch_skipping_conflicts(INSERT_SESSIONS_SQL, [*allocations.values(), *slots.values()],
                                    on_conflict=book_around_collisions, returning="allocation_id")
    return collections.Counter(pk for (pk,) in rows)


def ensure_windows(allocation_ids: list[int], now: datetime.datetime, size: int = WINDOW_SIZE) -> dict[int, int]:
    """`fill_windows`, returning only how many sessions each allocation got."""
    return {pk: fill.created for pk, fill in fill_windows(allocation_ids, now, size).items()}


def cancel_future_sessions(
    sender: object, *, allocations: list[TrainerAllocation], now: datetime.datetime, **kwargs: object
) -> dict[int, int]:
    """`allocation_released` receiver: cancel the released allocations' sessions that have not started by
    `now` (past ones stay as history). Runs in the release's transaction, under its allocation locks, so a
    window being filled at the same time is either done before (and cancelled here) or sees the release."""
    rows = fetch(
        "UPDATE training_sessions SET status = 'cancelled' WHERE allocation_id = ANY(%b::bigint[])"
        " AND status = 'scheduled' AND starts_at > %s RETURNING allocation_id",
        [[a.pk for a in allocations], now],
    )
    return dict(collections.Counter(pk for (pk,) in rows))


def future_session_count(allocation_id: int, now: datetime.datetime | None = None) -> int:
    return _future(allocation_id, now or timezone.now()).count()


@dataclass
class TopupReport:
    active: int = 0  # holding allocations (approved or active)
    below_threshold: int = 0  # of which had fewer than `threshold` future sessions when listed
    topped_up: int = 0  # got at least one new session from this run
    skipped_locked: int = 0  # being changed by another run or handler right now
    sessions_created: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def topup_all(
    threshold: int = TOPUP_THRESHOLD, size: int = WINDOW_SIZE, now: datetime.datetime | None = None
) -> TopupReport:
    """Top every holding (approved or active) allocation with fewer than `threshold` future sessions up to
    `size`. Safe to run concurrently with itself and with the handler: each allocation is taken under its row
    lock (SKIP LOCKED), re-counted under the lock, and each one commits on its own."""
    now = now or timezone.now()
    report = TopupReport()
    active = TrainerAllocation.objects.filter(status__in=TrainerAllocation.HOLDING_STATUSES)
    report.active = active.count()
    upcoming = Q(sessions__status=TrainingSession.Status.SCHEDULED, sessions__starts_at__gt=now)
    ids = list(
        active.annotate(n=Count("sessions", filter=upcoming))
        .filter(n__lt=threshold)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    report.below_threshold = len(ids)
    for pk in ids:
        with transaction.atomic():
            allocation = (
                TrainerAllocation.objects.select_for_update(skip_locked=True, no_key=True)
                .select_related("course")
                .filter(pk=pk, status__in=TrainerAllocation.HOLDING_STATUSES)
                .first()
            )
            if allocation is None:
                report.skipped_locked += 1
                continue
            if _future(pk, now).count() >= threshold:
                continue  # another run topped it up since we listed it
            created = ensure_window(allocation, now=now, size=size)
        if created:
            report.topped_up += 1
            report.sessions_created += created
    return report
