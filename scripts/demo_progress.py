"""`make demo`'s live progress, from the first payment on: one status line, redrawn every half second, with what
the webhook has answered and what each stage has done so far, and the enrollment rate over the last few seconds
(a rate over a sliding window: the first frame shows no rate rather than a nonsense one).

    payments 1200/2000 | purchased 1130 | allocated 1090 | enrolled 1020 | 412 enr/s | dead letters 0

On a terminal the line is redrawn in place; elsewhere (CI logs) a line is printed every LOG_EVERY seconds."""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable

REDRAW_SECONDS = 0.5
RATE_WINDOW_SECONDS = 5.0
LOG_EVERY = 5.0


def status_line(counts: dict[str, int], payments_planned: int, rate: float | None) -> str:
    enrolled = f"{counts['enrolled']}" + (f"/{counts['expected']}" if counts.get("expected") else "")
    return (f"payments {counts['payments']}/{payments_planned} | purchased {counts['purchases_active']} | "
            f"allocated {counts['allocations_holding']} | enrolled {enrolled} | "
            f"{'-' if rate is None else round(rate)} enr/s | dead letters {counts['dead_letters']}")


class LiveProgress(threading.Thread):
    """Draws `status_line` from `read_counts()` until `stop()`. `expected` may be set once it is known."""

    def __init__(self, read_counts: Callable[[], dict[str, int]], payments_planned: int, out=sys.stderr) -> None:
        super().__init__(daemon=True, name="demo-progress")
        self.read_counts, self.payments_planned, self.out = read_counts, payments_planned, out
        self.expected: int | None = None
        self._stopped = threading.Event()
        self._history: deque[tuple[float, int]] = deque()
        self._logged_at = 0.0
        self.last_line = ""

    def rate(self, now: float, enrolled: int) -> float | None:
        self._history.append((now, enrolled))
        while self._history and now - self._history[0][0] > RATE_WINDOW_SECONDS:
            self._history.popleft()
        first_at, first = self._history[0]
        return None if now - first_at < 1.0 else (enrolled - first) / (now - first_at)

    def run(self) -> None:
        from django.db import connection

        try:
            while not self._stopped.wait(REDRAW_SECONDS):
                self.draw()
        finally:
            connection.close()

    def draw(self) -> None:
        try:
            counts = self.read_counts()
        except Exception:  # PostgreSQL restarting (chaos): the next frame
            return
        now = time.monotonic()
        counts = {**counts, "expected": self.expected or 0}
        self.last_line = status_line(counts, self.payments_planned, self.rate(now, counts["enrolled"]))
        if self.out.isatty():
            self.out.write("\r\033[K" + self.last_line)
            self.out.flush()
        elif now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            print(self.last_line, file=self.out, flush=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join(5)
        self.draw()
        if self.out.isatty():
            self.out.write("\n")
        else:
            print(self.last_line, file=self.out, flush=True)
