"""Whether the machine has a core to spare for a consumer's second lane (workers.lanes).

Lanes trade CPU for time: a batch split into two transactions finishes sooner when PostgreSQL runs one lane's
statements on an idle core while Python works on the other, but each lane pays its own statements, commit,
allocation API call and publish. On a machine that other work keeps busy there is no idle core to run them side
by side, and the split is pure cost. Measured end to end (`make bench`'s pipeline, 20,000 purchases, interleaved
runs on one stack): splitting wherever it could cost 13-15% of the throughput against one lane; the purchases
stage alone, where the machine has idle cores, runs some 1.3x faster with two lanes than with one
(bench/analysis.md).

So a consumer splits its batches only while *the rest of the machine* leaves it room: the machine's busy CPU
time over the last `window`, less this process's own, as a fraction of the machine's CPU time. Its own work is
left out because it is what the split changes: the purchases stage alone keeps the machine 70-80% busy with two
lanes (the rest is PostgreSQL, 0.3-0.45), the whole pipeline's other processes keep it 0.7-0.9 busy beside each
stage. A consumer stops splitting once that reached WORKER_LANES_BUSY_LIMIT, and splits again only under
WORKER_LANES_RESUME_BELOW: the gap keeps one busy window from flipping the choice batch by batch.

It starts at one lane, and goes back to one lane after an idle spell (no batch for `IDLE_WINDOWS` windows: the
consumer had nothing to do). A reading that spans a start-up or an idle spell sees a quiet machine and would split
the first batches of a backlog, when every stage starts at once: end to end, those first splits alone (4-10
batches of each stage's 40) cost some 5%. A split needs a window of work that saw room. A long batch is work, not
an idle spell: a stage waiting on a slow allocation API keeps its readings, and its two lanes' calls side by side.

The readings are psutil.cpu_times (/proc/stat on Linux) and os.times, at most once a window (about 20 us). A
container whose CPU quota is smaller than the host it sees should set WORKER_LANES to its share of cores, or the
limit to 1, which turns the check off (always split).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psutil

# A consumer that finished no batch for this many windows was waiting, not working: its reading starts again.
IDLE_WINDOWS = 4


def busy_and_total(times: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds from a psutil.cpu_times() reading. Idle and I/O wait are not busy; guest time is
    already counted in user time on Linux, so it is left out of the total (as psutil's own cpu_percent does)."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - times.idle - getattr(times, "iowait", 0.0), total


def own_cpu_seconds() -> float:
    """CPU seconds this process has used, every thread of it (the Kafka client's and the lanes' included)."""
    own = os.times()
    return own.user + own.system


class Headroom:
    def __init__(
        self,
        busy_limit: float,
        resume_below: float,
        *,
        window: float = 0.25,
        cpu_times: Callable[[], Any] = psutil.cpu_times,
        own_cpu: Callable[[], float] = own_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.busy_limit, self.resume_below, self.window = busy_limit, resume_below, window
        self.enabled = busy_limit < 1
        self._cpu_times, self._own_cpu, self._clock = cpu_times, own_cpu, clock
        self.spare = not self.enabled
        self.busy_fraction: float | None = None  # the rest of the machine, over the last window read
        self._read_at, self._others, self._total = 0.0, 0.0, 0.0
        self._last_batch_done: float | None = None

    def has_spare(self) -> bool:
        """True while a second lane would find an idle core; re-read at most once a window."""
        if not self.enabled:
            return True
        now = self._clock()
        if self._last_batch_done is None or now - self._last_batch_done > IDLE_WINDOWS * self.window:
            self._start(now)
            return self.spare
        if now - self._read_at < self.window:
            return self.spare
        others, total = self._read()
        worked, elapsed = others - self._others, total - self._total
        self._read_at, self._others, self._total = now, others, total
        if elapsed <= 0:  # the counters did not move (a coarse clock): keep the last answer
            return self.spare
        self.busy_fraction = worked / elapsed
        if self.spare and self.busy_fraction >= self.busy_limit:
            self.spare = False
        elif not self.spare and self.busy_fraction < self.resume_below:
            self.spare = True
        return self.spare

    def _read(self) -> tuple[float, float]:
        """(CPU seconds the rest of the machine was busy, the machine's CPU seconds), both since boot."""
        busy, total = busy_and_total(self._cpu_times())
        return busy - self._own_cpu(), total

    def batch_done(self) -> None:
        """The consumer finished a batch: until the next one comes, it is waiting for work."""
        self._last_batch_done = self._clock()

    def _start(self, now: float) -> None:
        """One lane until a window of work has been read."""
        self.spare = False
        self._read_at, self._last_batch_done = now, now
        self._others, self._total = self._read()
