"""Trainer time: no two non-cancelled sessions of one trainer overlap, and how a writer books around collisions.

PostgreSQL has the last word, through statement-level triggers on training_sessions (migration 0006): after each
INSERT or UPDATE they take the trainers' time locks (`lock_trainer_time`, transaction-level advisory locks in a
fixed order) and look up, in the B-tree of a trainer's booked start times, a booking that overlaps a written row;
one found aborts the statement with SQLSTATE 23P01 (exclusion_violation) naming `no_overlapping_trainer_sessions`.
Why not the exclusion constraint this replaced (GiST over trainer and tstzrange): its check and its index cost 14
us of the 19 us a session row costs PostgreSQL, 7 rows per purchase, and more as history grows (docs/benchmarks.md).

The lock makes the check exact: a writer waits for whoever holds one of its trainers until that one commits, and
its check (a new snapshot, READ COMMITTED) then sees that booking. Under REPEATABLE READ or SERIALIZABLE the
check would read a snapshot from before the wait, so the trigger refuses those isolation levels for session
writes. The lookup is bounded by `MAX_SESSION_LENGTH`, which a check constraint holds every session to.

The triggers refuse; they do not skip. A writer that wants to skip colliding candidates (the rolling window takes
the next free dates instead) calls `book_free`, which locks the trainers first and filters in Python.
"""
from __future__ import annotations

import collections
import datetime
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sessions_sched.models import MAX_SESSION_LENGTH
from workers.sql import fetch, unnest_insert

BOOKED_SQL = """
SELECT trainer_id, starts_at, ends_at FROM training_sessions
WHERE trainer_id = ANY(%b::bigint[]) AND status <> 'cancelled' AND starts_at > %s AND starts_at < %s
"""


class SessionRow(NamedTuple):
    allocation_id: int
    trainer_id: int
    scheduled_date: datetime.date
    scheduled_time: datetime.time
    starts_at: datetime.datetime
    ends_at: datetime.datetime


def lock_trainer_time(trainer_ids: Iterable[int]) -> None:
    """Hold these trainers' time locks until the transaction ends (the triggers take the same ones)."""
    fetch("SELECT lock_trainer_time(%b::bigint[])", [sorted(set(trainer_ids))])


def overlaps(a_start: datetime.datetime, a_end: datetime.datetime,
             b_start: datetime.datetime, b_end: datetime.datetime) -> bool:
    """Half-open intervals: a session may start the minute another ends."""
    return a_start < b_end and b_start < a_end


def free_rows(rows: Sequence[SessionRow],
              booked: Iterable[tuple[int, datetime.datetime, datetime.datetime]]) -> list[SessionRow]:
    """The rows that overlap no booking of their trainer, nor a row kept before them (first come, first kept)."""
    spans: dict[int, list[tuple[datetime.datetime, datetime.datetime]]] = collections.defaultdict(list)
    for trainer_id, starts_at, ends_at in booked:
        spans[trainer_id].append((starts_at, ends_at))
    kept = []
    for row in rows:
        taken = spans[row.trainer_id]
        if any(overlaps(row.starts_at, row.ends_at, start, end) for start, end in taken):
            continue
        taken.append((row.starts_at, row.ends_at))
        kept.append(row)
    return kept


def book_free(rows: Sequence[SessionRow]) -> list[int]:
    """Insert the scheduled sessions among `rows` that collide with nothing: not with a booking of their trainer
    (under the trainers' locks, so none can appear meanwhile), not with an earlier row, and not with an existing
    session of the same allocation, date and time (ON CONFLICT DO NOTHING). Returns the allocation id of each
    session inserted."""
    if not rows:
        return []
    trainers = {row.trainer_id for row in rows}
    lock_trainer_time(trainers)
    earliest = min(row.starts_at for row in rows) - MAX_SESSION_LENGTH
    latest = max(row.ends_at for row in rows)
    booked = fetch(BOOKED_SQL, [sorted(trainers), earliest, latest])
    kept = free_rows(rows, booked)
    if not kept:
        return []
    columns = dict(zip(SessionRow._fields, ("bigint", "bigint", "date", "time", "timestamptz", "timestamptz")))
    inserted = unnest_insert(
        "training_sessions", columns, {name: [getattr(row, name) for row in kept] for name in SessionRow._fields},
        constants={"status": "'scheduled'", "created_at": "clock_timestamp()"},
        on_conflict="ON CONFLICT DO NOTHING", returning="allocation_id",
    )
    return [pk for (pk,) in inserted]
