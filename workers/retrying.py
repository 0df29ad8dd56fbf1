"""Due retries: the PendingRetry rows of a stage's group, run between polls (the Processor's second half).

Each row runs in a transaction of its own, locked with SKIP LOCKED so several workers of a group share the due
rows, within a time budget (settings.WORKER_TIME_BUDGET_SECONDS) so a slow dependency cannot keep a consumer from
polling past max.poll.interval.ms. Under key order only the head of each key is taken (workers.ordering). A row
that no longer decodes (the contract tightened after it was stored) is dead-lettered on its own; one whose retry
cannot be made durable rolls back alone and waits its backoff, so the rows behind it run now. While the stage
is paused (workers.line) no row runs.
"""
from __future__ import annotations

import datetime
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Exists
from django.utils import timezone

from workers import metrics, ordering
from workers.dead_letters import SourceMessage
from workers.envelope import Event, InvalidEvent, decode
from workers.errors import PermanentError
from workers.line import LineStopped
from workers.models import PendingRetry, StagePause
from workers.pending import error_parts, source_of
from workers.sql import fetch

log = logging.getLogger(__name__)


# Whether anything could be due, before the transaction that locks the next row: most looks find nothing, and the
# look through the ORM (a transaction, the key-order and pause subqueries) cost 1.7 ms of Python and 0.4 ms of
# PostgreSQL each, four times a second in every consumer. A superset of what `_retry_next` takes.
ANY_DUE_SQL = ("SELECT EXISTS (SELECT 1 FROM pending_retries"
               " WHERE consumer = %s AND NOT dead_lettered AND next_attempt_at <= %s)")


class DueRetries:
    """Mixed into workers.processing.Processor, whose claim, handling and dead-lettering it uses."""

    def run_due(self, limit: int = 100, *, budget_seconds: float | None = None) -> int:
        """Run due retries (none while the breaker is open), one transaction per row, for at most
        `budget_seconds` (settings.WORKER_TIME_BUDGET_SECONDS), so a slow dependency cannot keep the consumer
        from polling past max.poll.interval.ms. Returns how many rows were attempted.

        A row whose retry cannot be made durable (its dead letter not acknowledged) rolls back alone and is
        postponed by its backoff, so the rows behind it run now instead of after it, again and again."""
        if not self.breaker.allows_work() or not self._any_due():
            return 0
        deadline = time.monotonic() + (budget_seconds if budget_seconds is not None
                                       else settings.WORKER_TIME_BUDGET_SECONDS)
        done = 0
        while done < limit and time.monotonic() < deadline and self.breaker.allows_work():
            if self._retry_next(probe=False) is None:
                break
            done += 1
        return done

    def _any_due(self) -> bool:
        [(any_due,)] = fetch(ANY_DUE_SQL, [self.stage.group_id, timezone.now()])  # the clock _retry_next uses
        return any_due

    def probe(self) -> bool | None:
        """Half-open breaker: try the oldest waiting event once, without spending its attempt on a transient
        failure. Returns the probe's success, or None when no row could be tried. Only when nothing waits at
        all does the breaker close; rows that wait under another worker's lock keep it half-open (that worker
        is trying them: their outcome, not an empty table, says whether the dependency is back)."""
        return self._retry_next(probe=True)

    def _retry_next(self, *, probe: bool) -> bool | None:
        """Lock the next row (the next due one, or for a probe the oldest) and retry it in its own transaction.
        Returns the retry's success, or None when there is no row to take."""
        taken: list[PendingRetry] = []
        try:
            with transaction.atomic():
                # Not while the stage is paused: another consumer of the group may not have read the pause yet.
                # Only the head of each key runs (workers.ordering); dead-lettered heads never do.
                runnable = ordering.runnable(self.stage.group_id, self.stage.ordering)
                rows = runnable.select_for_update(skip_locked=True).filter(
                    ~Exists(StagePause.objects.filter(stage=self.stage.name)))
                if not probe:
                    rows = rows.filter(next_attempt_at__lte=timezone.now())
                row = rows.order_by("next_attempt_at").first()
                if row is None:
                    if probe and not runnable.exists():
                        self.breaker.record(outage=False)
                    return None
                taken.append(row)
                return self._retry(row, probe=probe)
        except LineStopped:
            raise
        except Exception:
            if not taken:
                raise
            self._postpone(taken[0])
            return False

    def _postpone(self, row: PendingRetry) -> None:
        """The retry of `row` rolled back for a reason outside its handler: try it again after its backoff."""
        log.exception("retry could not be made durable; postponed", extra={
            "stage": self.stage.name, "event_id": str(row.event_id)})
        due = timezone.now() + datetime.timedelta(seconds=self.backoff.delay(max(row.attempts, 1)))
        PendingRetry.objects.filter(pk=row.pk).update(next_attempt_at=due)

    def _retry(self, row: PendingRetry, *, probe: bool) -> bool:
        source = source_of(row)
        try:
            event = decode(source.value)
        except InvalidEvent as exc:  # it decoded when it was stored; the contract has tightened since
            self._dead_letter([self._record(source, None, exc, attempts=row.attempts, reason="invalid",
                                            first_failed_at=row.first_failed_at)])
            row.delete()
            return False
        try:
            with transaction.atomic():
                fresh = self._claim([event])
                if fresh:
                    self._handle_one(event)
            row.delete()
            self._succeeded(fresh)
            self._resolve_replays([(source, event)])
            return True
        except Exception as exc:
            self._retry_failed(row, source, event, exc, probe=probe)
            return False

    def _retry_failed(self, row: PendingRetry, source: SourceMessage, event: Event, exc: Exception, *,
                      probe: bool) -> None:
        outage = self.policy.is_outage(exc)
        self.breaker.record(outage=outage)
        kind = "transient" if self.policy.is_transient(exc) else "retry"
        metrics.EVENTS_FAILED.labels(self.stage.name, kind).inc()
        attempts = row.attempts if (probe and outage) else row.attempts + 1
        now = timezone.now()
        row.error_class, row.error_message, row.traceback = error_parts(exc)
        row.attempts, row.last_failed_at = attempts, now
        if isinstance(exc, PermanentError) or attempts >= self.policy.max_attempts:
            reason = "permanent" if isinstance(exc, PermanentError) else "exhausted"
            self._dead_letter([self._record(source, event, exc, attempts=attempts, reason=reason,
                                            first_failed_at=row.first_failed_at)])
            if self._holds_dead_letters(source):  # the row stays, as the dead-lettered head of its key
                row.dead_lettered = True
                row.save()
            else:
                row.delete()
            return
        row.next_attempt_at = now + datetime.timedelta(seconds=self.backoff.delay(max(attempts, 1)))
        row.save()
        metrics.EVENTS_RETRIED.labels(self.stage.name).inc()
