"""Whether the machine has a core to spare for a consumer's second lane (workers.lanes).

Lanes trade CPU for time: a batch split into two transactions finishes sooner when PostgreSQL runs one lane's
statements on an idle core while Python works on the other, but each lane pays its own statements, commit,
allocation API call and publish. On a machine that is already busy there is no idle core to run them side by
side, and the split is pure cost. Measured end to end (`make bench`'s pipeline, 20,000 purchases, three
interleaved pairs on one stack): two lanes 0.859-0.897 ms of machine CPU per purchase, one lane 0.708-0.740 ms;
the purchases stage alone, where the machine has idle cores, runs 0.96x the plain loop with two lanes and 0.80x
with one. So a consumer splits its batches only while the machine's CPUs were less than
WORKER_LANES_BUSY_LIMIT busy over the last second, and once it stopped, splits again only under
WORKER_LANES_RESUME_BELOW: the gap keeps one busy second from flipping the choice batch by batch.

The reading is the whole machine's CPU time (psutil.cpu_times: /proc/stat on Linux), taken at most once a
`window` (about 20 us a reading). A container whose CPU quota is smaller than the host it sees should set
WORKER_LANES to its share of cores, or the limit to 1, which turns the check off (always split).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil


def busy_and_total(times: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds from a psutil.cpu_times() reading. Idle and I/O wait are not busy; guest time is
    already counted in user time on Linux, so it is left out of the total (as psutil's own cpu_percent does)."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return total - times.idle - getattr(times, "iowait", 0.0), total


class Headroom:
    def __init__(
        self,
        busy_limit: float,
        resume_below: float,
        *,
        window: float = 1.0,
        cpu_times: Callable[[], Any] = psutil.cpu_times,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.busy_limit, self.resume_below, self.window = busy_limit, resume_below, window
        self.enabled = busy_limit < 1
        self._cpu_times, self._clock = cpu_times, clock
        self.spare = True
        self.busy_fraction: float | None = None  # over the last window read
        self._read_at = clock()
        self._busy, self._total = busy_and_total(cpu_times()) if self.enabled else (0.0, 0.0)

    def has_spare(self) -> bool:
        """True while a second lane would find an idle core; re-read at most once a window."""
        if not self.enabled:
            return True
        now = self._clock()
        if now - self._read_at < self.window:
            return self.spare
        busy, total = busy_and_total(self._cpu_times())
        worked, elapsed = busy - self._busy, total - self._total
        self._read_at, self._busy, self._total = now, busy, total
        if elapsed <= 0:  # the counters did not move (a coarse clock): keep the last answer
            return self.spare
        self.busy_fraction = worked / elapsed
        if self.spare and self.busy_fraction >= self.busy_limit:
            self.spare = False
        elif not self.spare and self.busy_fraction < self.resume_below:
            self.spare = True
        return self.spare
