"""The loop every long-running command shares: signal handling, one iteration after another, and what to do
when an iteration fails. The stage consumers, the outbox relay and the dead-letter persister all run on it,
as Zulip's queue workers share one runner.

SIGTERM and SIGINT only raise a flag: the iteration in flight finishes (its batch is committed or rewound),
then the loop returns and the command closes its clients.
"""
from __future__ import annotations

import gc
import logging
import signal
import time
from collections.abc import Callable

from django.db import close_old_connections, connection

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM/SIGINT once `install()` ran, or by `request()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requested = False

    def request(self, signum: int | None = None, frame: object = None) -> None:
        log.info("stop requested", extra={"worker": self.name, "signal": signum})
        self.requested = True

    def install(self) -> StopFlag:
        signal.signal(signal.SIGTERM, self.request)
        signal.signal(signal.SIGINT, self.request)
        return self


# Python's cyclic garbage collector runs a young-generation pass every 700 net allocations by default: a batch
# of 500 events allocates hundreds of thousands of short-lived objects (dicts, models, UUIDs), which reference
# counting frees anyway, so those passes are almost all waste. Measured on the purchases stage (20,000 events,
# bench/reference.py): 4.6-5.1 s of consumer CPU with the default thresholds, 3.1-3.8 s with these.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """For a long-running process once it has started (its modules imported, its clients made): move every object
    alive so far out of the collector's sight (`gc.freeze()`: a full collection then does not walk Django and the
    libraries again), and collect young objects less often (GC_THRESHOLDS says why). Cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def reset_db_connection() -> None:
    """Drop the database connection after a failure, so the next iteration opens a fresh one."""
    try:
        connection.close()
    except Exception:  # already broken: nothing to close
        pass


def run_until_stopped(
    iteration: Callable[[], bool],
    *,
    stop: StopFlag,
    idle_seconds: float = 0.0,
    error_pause: float = 1.0,
    on_error: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Run `iteration()` until the flag is set (or `should_stop()`). It returns whether it found work; when
    it found none the loop sleeps `idle_seconds`. An exception is logged, the database connection reset,
    `on_error()` called (e.g. to rebuild a consumer), and the loop pauses `error_pause` before going on: a
    long-running process never dies of one failed iteration."""
    while not stop.requested and not (should_stop and should_stop()):
        close_old_connections()
        try:
            busy = iteration()
        except Exception:
            log.exception("iteration failed; going on", extra={"worker": stop.name})
            reset_db_connection()
            if on_error is not None:
                on_error()
            time.sleep(error_pause)
            continue
        if not busy and idle_seconds:
            time.sleep(idle_seconds)
