"""Memory of the whole stack during a benchmark: the peak of PSS summed over every process, read from /proc.

PSS (proportional set size, /proc/PID/smaps_rollup) shares each page among the processes that map it, so the
sum over PostgreSQL's backends counts shared_buffers once and gunicorn's forked workers do not count the
master's pages twice; RSS summed the same way would count them once per process. Sampled every `interval`
seconds in a thread: reading smaps_rollup walks a process's page tables, a few ms for the JVM, so a sample
every 2 s costs the pipeline nothing measurable.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from bench.cpu import _processes, services, tree_pids


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):  # the process ended between the listing and the read
        pass
    return 0


def sample(own: dict[str, int]) -> dict[str, float]:
    """MiB of PSS now, per process tree (`own`: name -> root pid, plus the stack's services)."""
    procs = _processes()
    roots = {name: [pid] for name, pid in own.items()} | services(procs)
    return {name: round(sum(_pss_kib(pid) for root in pids for pid in tree_pids(procs, root)) / 1024, 1)
            for name, pids in roots.items()}


class PeakMemory:
    """`peak = PeakMemory(pids).start()` ... `peak.stop()`, then `peak.result()`: the sample with the largest
    total."""

    def __init__(self, own: Callable[[], dict[str, int]], interval: float = 2.0) -> None:
        self.own, self.interval = own, interval
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="peak-memory")

    def _run(self) -> None:
        while True:
            now = sample(self.own())
            if sum(now.values()) > sum(self.peak.values()):
                self.peak = now
            if self._stop.wait(self.interval):
                return

    def start(self) -> PeakMemory:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def result(self) -> dict:
        return {"peak_total_mib": round(sum(self.peak.values()), 1), "by_component_mib": self.peak}
