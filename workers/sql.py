"""Hand-written SQL for the hot paths, on Django's connection and inside its transaction.

Why not the ORM there: a batch of 500 events writes thousands of rows, and `bulk_create` builds a model
instance per row and one placeholder per value; with psycopg's client-side binding (Django's default) the
parameters are then quoted into a query text of several hundred kilobytes, which psycopg re-parses on every
call. Profiles of the stages put 25-50 % of each consumer's CPU there (docs/benchmarks.md). Here a batch is sent
as one array per column (`INSERT ... SELECT FROM unnest(...)`), with server-side binding, so the statement text
is short and constant. Array parameters are written `%b` (binary): psycopg dumps a list of 500 UUIDs 6x faster
in binary than as a text array literal, and a list of 500 bytea values 25x faster (measured on this machine).

The cursor is still Django's wrapper: errors become django.db errors, and queries show up in
`connection.queries` / CaptureQueriesContext like any other.
"""
from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.backends.postgresql.base import ServerBindingCursor


@contextmanager
def bound_cursor() -> Iterator[Any]:
    """A Django cursor on the current connection that binds parameters server-side.

    It runs Django's connection health check first (CONN_HEALTH_CHECKS) as `connection.cursor()` does: a
    persistent connection that PostgreSQL dropped (a restart, pg_terminate_backend) is then replaced at the start
    of a request instead of failing it with a 500."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    raw = ServerBindingCursor(connection.connection)
    try:
        yield connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    finally:
        raw.close()


def fetch(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Run one statement with server-side binding; returns its rows ([] when it returns none)."""
    with bound_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


UNIQUE_VIOLATION = "23505"
EXCLUSION_VIOLATION = "23P01"
CONFLICTS = (UNIQUE_VIOLATION, EXCLUSION_VIOLATION)


def fetch_skipping_conflicts(
    sql: str, params: Sequence[Any], on_conflict: str | Callable[[], list[tuple]], returning: str = "", *,
    all_or_returning: bool = False,
) -> list[tuple] | None:
    """An INSERT whose conflicts are rare: run it plain in a savepoint, and only if a unique index or the
    trainers' overlap check refuses a row, again with `on_conflict` (e.g. "ON CONFLICT DO NOTHING"), or, when
    the statement cannot skip the conflicts itself, by calling `on_conflict` for the rows it would have returned
    (the sessions' overlaps: sessions_sched.booking.book_free). A plain INSERT costs PostgreSQL about a third less
    than the speculative insertion ON CONFLICT needs (measured: 35,000 session rows in 0.52 s against 0.81 s).
    `sql` ends before the conflict clause; `returning` (without the keyword) is added to both versions.

    `all_or_returning`: when the caller only needs to know which rows went in, the plain statement returns
    nothing and None stands for "every row": reading 500 rows back costs the stage's claim of every batch more
    than the INSERT saves by it. Only the version with `on_conflict` returns `returning`."""
    tail = f" RETURNING {returning}" if returning else ""
    try:
        with transaction.atomic():
            if all_or_returning:
                fetch(sql, params)
                return None
            return fetch(sql + tail, params)
    except IntegrityError as exc:
        if getattr(exc.__cause__, "sqlstate", None) not in CONFLICTS:
            raise
    if callable(on_conflict):
        return on_conflict()
    return fetch(f"{sql} {on_conflict}{tail}", params)


def unnest_insert(
    table: str,
    columns: dict[str, str],
    values: dict[str, Sequence[Any]],
    *,
    constants: dict[str, str] | None = None,
    on_conflict: str = "",
    returning: str = "",
) -> list[tuple]:
    """INSERT many rows with one array parameter per column.

    `columns` maps column -> PostgreSQL type of its array elements; `values` maps the same columns to equally
    long sequences; `constants` maps further columns to SQL expressions (e.g. "now()"). With `on_conflict`, the
    conflicts are taken as rare (`fetch_skipping_conflicts`). Returns the rows of `returning`, if any."""
    names = list(columns)
    lengths = {len(values[name]) for name in names}
    if len(lengths) != 1:
        raise ValueError(f"columns of unequal length: { {n: len(values[n]) for n in names} }")
    constants = constants or {}
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    select = ", ".join([f"u.c{i}" for i in range(len(names))] + list(constants.values()))
    arrays = ", ".join(f"%b::{columns[name]}[]" for name in names)
    into = ", ".join([*names, *constants])
    sql = f"INSERT INTO {table} ({into}) SELECT {select} FROM unnest({arrays}) AS u({aliases})"
    params = [list(values[name]) for name in names]
    if on_conflict:
        return fetch_skipping_conflicts(sql, params, on_conflict, returning)
    return fetch(sql + (f" RETURNING {returning}" if returning else ""), params)


class SequenceIds:
    """Ids of a table's serial column, drawn from its sequence `block` at a time (the "pooled" id generator of
    ORMs such as Hibernate), for a hot path that must name a row before the one statement that inserts it: the
    payment webhook puts the payment id in its event, and drawing it alone would cost a round trip per request.

    Each process (and each child forked from it) has its own block, so ids stay unique but are not in the order
    the rows arrive across processes, and a process that exits leaves the rest of its block unused, a gap. Rows
    are ordered by their own timestamps, never by id. Thread-safe: gunicorn threads share one block."""

    def __init__(self, table: str, column: str = "id", block: int = 32) -> None:
        self.sql = f"SELECT nextval(pg_get_serial_sequence('{table}', '{column}')) FROM generate_series(1, {block})"
        self._ids: collections.deque[int] = collections.deque()
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self.forget)  # a forked child must never hand out its parent's ids

    def take(self) -> int:
        with self._lock:
            if not self._ids:
                self._ids.extend(row[0] for row in fetch(self.sql))
            return self._ids.popleft()

    def forget(self) -> None:
        """Drop the ids drawn and not handed out yet (after a fork; in tests, after the sequence was reset)."""
        self._ids = collections.deque()
        self._lock = threading.Lock()
