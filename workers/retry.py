"""When to try a failed event again, and when to stop trying for a while (the circuit breaker).

Backoff (documented here, tested as a table in tests/workers/test_retry.py):

    nominal(n) = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (n - 1))     n = attempts made so far (>= 1)
    delay(n)   = nominal(n) / 2 + uniform(0, nominal(n) / 2)                   "equal jitter"

so with base 1 s the waits after attempts 1, 2, 3, 4 are in [0.5, 1], [1, 2], [2, 4], [4, 8] seconds: never less
than half the nominal wait (the dependency gets its rest) and spread over the other half (no thundering herd
when many events failed at the same moment).
"""
from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from workers import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    base_seconds: float
    max_seconds: float

    def nominal(self, attempts: int) -> float:
        return min(self.max_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        nominal = self.nominal(attempts)
        return nominal / 2 + rand() * nominal / 2


@dataclass
class CircuitBreaker:
    """Stops a stage from burning retry attempts while its dependency is down.

    CLOSED: normal. Each outage failure (workers.errors.is_outage: timeout, refused connection, 5xx) and each
    success is recorded over the last `window` outcomes; when at least `min_failures` of them are outage
    failures and they are at least `failure_ratio` of the window,
    the breaker OPENS: the consumer pauses its partitions (it keeps polling, so the group does not evict it)
    and runs no retries. After `open_seconds` (doubling up to `max_open_seconds` while the outage lasts) it is
    HALF_OPEN: exactly one probe runs; its failure does not count as an attempt of that event. A successful
    probe CLOSES the breaker and consumption resumes; a failed one opens it again.
    """

    stage: str
    window: int = 10
    min_failures: int = 5
    failure_ratio: float = 0.5
    open_seconds: float = 1.0
    max_open_seconds: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: str = "closed"
    _outcomes: deque = field(default_factory=deque)
    _opened_at: float = 0.0
    _current_open: float = 0.0

    def __post_init__(self) -> None:
        self._current_open = self.open_seconds
        metrics.BREAKER_OPEN.labels(self.stage).set(0)

    def _set(self, state: str) -> None:
        if state != self.state:
            log.warning(
                "circuit breaker %s -> %s", self.state, state,
                extra={"stage": self.stage, "breaker_state": state, "open_seconds": self._current_open},
            )
            self.state = state
            metrics.BREAKER_TRANSITIONS.labels(self.stage, state).inc()
            metrics.BREAKER_OPEN.labels(self.stage).set(0 if state == "closed" else 1)

    def record(self, outage: bool) -> None:
        if self.state == "half_open":
            if outage:
                self._current_open = min(self._current_open * 2, self.max_open_seconds)
                self._open()
            else:
                self._close()
            return
        if self.state == "open":
            return
        self._outcomes.append(outage)
        while len(self._outcomes) > self.window:
            self._outcomes.popleft()
        failures = sum(self._outcomes)
        if failures >= self.min_failures and failures / len(self._outcomes) >= self.failure_ratio:
            self._open()

    def record_successes(self, count: int) -> None:
        """`record(outage=False)` count times: past the window (and a half-open breaker's closing) more change
        nothing."""
        for _ in range(min(count, self.window + 1)):
            self.record(outage=False)

    def _open(self) -> None:
        self._opened_at = self.clock()
        self._set("open")

    def _close(self) -> None:
        self._outcomes.clear()
        self._current_open = self.open_seconds
        self._set("closed")

    def allows_work(self) -> bool:
        """Whether the consumer may consume and run retries now."""
        if self.state == "open" and self.clock() - self._opened_at >= self._current_open:
            self._set("half_open")
        return self.state == "closed"

    @property
    def wants_probe(self) -> bool:
        self.allows_work()
        return self.state == "half_open"

    @property
    def is_open(self) -> bool:
        return self.state != "closed"
