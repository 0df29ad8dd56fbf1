"""decode -> claim -> handle -> (retry | dead-letter): what happens to a polled batch, without Kafka's loop.

Guarantees, given that the caller commits offsets only after `process()` returns:
- Exactly-once effects per consumer group: the ProcessedEvent row is claimed (INSERT ... ON CONFLICT DO
  NOTHING) in the same transaction as the handler's writes and outbox rows; an event whose claim exists is
  skipped. A concurrent duplicate blocks on the unique index and then skips.
- Batches: one transaction for the whole batch when the stage allows it; if anything in it fails, the
  transaction rolls back and every event runs again alone, so a bad event never rolls back or repeats its
  neighbours' effects.
- Retries without stalling: a transiently failed event becomes a PendingRetry row (the original message
  inside) in PostgreSQL, so its offset can be committed and the partition keeps flowing. Due rows are run by
  `run_due()` between polls (workers.retrying). Why a table rather than retry topics: the attempt count, due
  time and the handler's effects then live in one transactional store (a retry that succeeds deletes its row
  in the same transaction that claims the event), it survives restarts and rebalances with no extra topics per group,
  and several workers of a group share the due rows with SELECT ... FOR UPDATE SKIP LOCKED.
- Anything the framework cannot make durable (database down, DLQ not acknowledged) raises out of `process()`,
  and the caller rewinds the batch instead of committing it.
- Liveness: an event that already waits in PendingRetry (redelivered after a rebalance) is left to its row; a
  batch falling back one event at a time parks what is left once WORKER_TIME_BUDGET_SECONDS is spent; dead
  letters past the stage's limit stop the line (workers.line) instead of being written.
"""
from __future__ import annotations

import datetime
import enum
import logging
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workers import metrics
from workers.dead_letter_store import REPLAY_TOKEN_HEADER, mark_replays_resolved
from workers.dead_letters import DeadLetterPublisher, DeadLetterRecord, SourceMessage
from workers.envelope import Event, InvalidEvent, decode, misplaced
from workers.errors import PermanentError, Superseded
from workers.line import LineMonitor, LineStopped
from workers.ordering import PARKED_NOTE, sort_batch
from workers.oversize import header_limits, too_many_headers
from workers.pending import error_parts, keep, pending_row
from workers.retry import Backoff, CircuitBreaker
from workers.retrying import DueRetries
from workers.sql import fetch_skipping_conflicts
from workers.stage import DeadLetterPolicy, Stage

log = logging.getLogger(__name__)

CLAIM_SQL = """
INSERT INTO processed_events (consumer, event_id, event_type, correlation_id, processed_at)
SELECT %s::text, e.id, e.type, e.corr, now() FROM unnest(%b::uuid[], %b::text[], %b::uuid[]) AS e(id, type, corr)
"""


class Outcome(enum.Enum):
    """What became of one event run on its own."""

    DONE = "done"
    HELD = "held"  # failed, and a PendingRetry row now stands for it: a retry, or a dead-lettered head of its key
    GONE = "gone"  # failed, and dead-lettered or dropped: nothing of it waits


def _key_text(key: object) -> str | None:
    return None if key is None else str(key)


class Processor(DueRetries):
    def __init__(
        self, stage: Stage, *, backoff: Backoff, breaker: CircuitBreaker, dead_letters: DeadLetterPublisher
    ) -> None:
        self.stage = stage
        self.policy = stage.retry
        self.backoff = stage.retry.backoff or backoff
        self.breaker = breaker
        self.dead_letters = dead_letters
        self.line = LineMonitor(stage.dead_letter_limit)
        self._processed = metrics.EVENTS_PROCESSED.labels(stage.name)
        self._event_age = metrics.END_TO_END_SECONDS.labels(stage.name)

    # --- a polled batch ------------------------------------------------------------------------------
    def process(self, sources: Sequence[SourceMessage]) -> None:
        invalid, events = self._decode(sources)
        self._dead_letter(invalid)
        events = self._to_run_now(events)
        if not events:
            return
        if self.breaker.is_open:  # opened while this batch was in flight: park it without spending attempts
            self._park(events)
            return
        if self.stage.batchable and len(events) > 1:
            try:
                self._run_together([event for _, event in events])
                self._resolve_replays(events)
                return
            except Exception as exc:
                metrics.BATCH_FALLBACKS.labels(self.stage.name).inc()
                log.info("batch failed, one event at a time", extra={"stage": self.stage.name, "error": repr(exc)})
        self._run_each(events)

    def _run_each(self, events: list[tuple[SourceMessage, Event]]) -> None:
        """One event at a time, each in its own transaction. Under key order, an event whose key an earlier event
        of this batch now holds (it waits for a retry, or was dead-lettered) is parked behind it."""
        done = []
        held: set[bytes] = set()
        deadline = time.monotonic() + settings.WORKER_TIME_BUDGET_SECONDS
        for position, (source, event) in enumerate(events):
            if self.breaker.is_open:
                self._park(events[position:])
                break
            if time.monotonic() > deadline:  # a slow dependency: keep polling, the retries take the rest
                self._park(events[position:], note="parked: its batch ran past the time budget")
                break
            if source.key is not None and source.key in held:
                self._park([(source, event)], note=PARKED_NOTE)
                metrics.EVENTS_PARKED.labels(self.stage.name).inc()
                continue
            try:
                outcome = self._run_one(source, event)
            except LineStopped:  # this event would pass the dead-letter limit: it and the rest wait for a resume
                self._park(events[position:], note="parked: the stage stopped the line")
                break
            if outcome is Outcome.DONE:
                done.append((source, event))
            elif outcome is Outcome.HELD and self.stage.ordering.by_key and source.key is not None:
                held.add(source.key)
        self._resolve_replays(done)

    def _to_run_now(self, events: list[tuple[SourceMessage, Event]]) -> list[tuple[SourceMessage, Event]]:
        """One lookup for the batch (workers.ordering): events that already wait in PendingRetry for this group
        (redelivered after a rebalance or a failed commit) are left to their row, since running them here too
        could dead-letter an event that its retry then handles; under key order, events whose key has rows are
        parked behind them. Returns the rest."""
        batch = sort_batch(self.stage.group_id, self.stage.ordering, events)
        if batch.waiting:
            metrics.EVENTS_SKIPPED.labels(self.stage.name).inc(batch.waiting)
        if batch.park:
            self._park(batch.park, note=PARKED_NOTE)
            metrics.EVENTS_PARKED.labels(self.stage.name).inc(len(batch.park))
        return batch.run

    def _decode(self, sources: Sequence[SourceMessage]) -> tuple[list[DeadLetterRecord],
                                                                  list[tuple[SourceMessage, Event]]]:
        """The batch's events, each once, and the dead letters of the messages that are not events for it."""
        invalid: list[DeadLetterRecord] = []
        events: list[tuple[SourceMessage, Event]] = []
        seen: set = set()
        # Settings read once per batch, not per message (0.5 us a read).
        max_bytes, limits, prefix = settings.KAFKA_MAX_MESSAGE_BYTES, header_limits(), settings.KAFKA_TOPIC_PREFIX
        for source in sources:
            try:
                if (too_many := too_many_headers(source.headers, limits)) is not None:
                    raise InvalidEvent(too_many)
                event = decode(source.value, max_bytes=max_bytes)
            except InvalidEvent as exc:
                invalid.append(self._record(source, None, exc, attempts=0, reason="invalid"))
                continue
            wrong_topic = misplaced(event, source.topic, prefix)
            if wrong_topic is not None:  # a valid event, but not for this topic's handler: never run it
                invalid.append(self._record(source, event, wrong_topic, attempts=0, reason="invalid"))
                continue
            if event.event_id not in seen:  # the same event twice in one batch: handle it once
                seen.add(event.event_id)
                events.append((source, event))
        return invalid, events

    def _resolve_replays(self, handled: Sequence[tuple[SourceMessage, Event]]) -> None:
        """A replayed dead letter whose event this group has now handled is resolved."""
        tokens = [(value.decode(errors="replace"), event.event_id) for source, event in handled
                  for name, value in source.headers if name == REPLAY_TOKEN_HEADER and value]
        if tokens:
            mark_replays_resolved(tokens, consumer_group=self.stage.group_id)

    def _claim(self, events: Sequence[Event]) -> list[Event]:
        """Record the events as processed by this group; returns those not processed before."""
        if not self.stage.record_processed:
            return list(events)
        rows = fetch_skipping_conflicts(  # a duplicate is rare: redeliveries after a crash or a rebalance
            CLAIM_SQL,
            [self.stage.group_id, [e.event_id for e in events], [e.event_type for e in events],
             [e.correlation_id for e in events]],
            on_conflict="ON CONFLICT (consumer, event_id) DO NOTHING",
            returning="event_id",
            all_or_returning=True,
        )
        if rows is None:  # every claim was new
            return list(events)
        fresh = {row[0] for row in rows}
        skipped = len(events) - len(fresh)
        if skipped:
            metrics.EVENTS_SKIPPED.labels(self.stage.name).inc(skipped)
        return [e for e in events if e.event_id in fresh]

    def _succeeded(self, events: Sequence[Event]) -> None:
        now = timezone.now()
        self._processed.inc(len(events))
        self.line.succeeded(len(events))
        metrics.observe_many(self._event_age, [max((now - e.occurred_at).total_seconds(), 0) for e in events])
        self.breaker.record_successes(len(events))

    def _run_together(self, events: list[Event]) -> None:
        with transaction.atomic():
            fresh = self._claim(events)
            if fresh:
                if self.stage.batch_handler is not None:
                    self.stage.batch_handler(fresh)
                else:
                    for event in fresh:
                        self.stage.handler(event)
        self._succeeded(fresh)

    def _run_one(self, source: SourceMessage, event: Event) -> Outcome:
        try:
            with transaction.atomic():
                fresh = self._claim([event])
                if fresh:
                    self._handle_one(event)
            self._succeeded(fresh)
            return Outcome.DONE
        except Exception as exc:
            held = self._failed(source, event, exc, attempts=1, first_failed_at=None)
            return Outcome.HELD if held else Outcome.GONE

    def _handle_one(self, event: Event) -> None:
        """The stage's handler in a savepoint, so a Superseded event keeps its claim and none of its writes."""
        try:
            with transaction.atomic():
                self.stage.handler(event)
        except Superseded as exc:
            metrics.EVENTS_SUPERSEDED.labels(self.stage.name, event.event_type).inc()
            log.info("superseded: %s", exc, extra={"stage": self.stage.name, "event_id": str(event.event_id),
                                                   "correlation_id": str(event.correlation_id)})

    def _failed(
        self, source: SourceMessage, event: Event, exc: Exception, *, attempts: int, first_failed_at
    ) -> bool:
        """First failure of a freshly consumed event: retry later, or dead-letter now. Returns whether a
        PendingRetry row now stands for it (a retry, or a dead-lettered head holding its key)."""
        transient = self.policy.is_transient(exc)
        kind = "permanent" if isinstance(exc, PermanentError) else ("transient" if transient else "unexpected")
        metrics.EVENTS_FAILED.labels(self.stage.name, kind).inc()
        self.breaker.record(outage=self.policy.is_outage(exc))
        if self.stage.dead_letters is DeadLetterPolicy.LOG_AND_COUNT:
            self.line.dead_lettered(1, self.stage.name)
            metrics.EVENTS_DROPPED.labels(self.stage.name, kind).inc()
            log.warning("handler failed; acknowledged (dead-letter policy: log and count)", exc_info=exc,
                        extra={"stage": self.stage.name, "event_id": str(event.event_id)})
            return False
        now = timezone.now()
        if isinstance(exc, PermanentError) or attempts >= self.policy.max_attempts:
            reason = "permanent" if isinstance(exc, PermanentError) else "exhausted"
            self._dead_letter([self._record(source, event, exc, attempts=attempts, reason=reason,
                                            first_failed_at=first_failed_at)])
            if not self._holds_dead_letters(source):
                return False
            keep([pending_row(self.stage.group_id, source, event, attempts=attempts, due=now, now=now, exc=exc,
                              dead_lettered=True)])
            return True
        due = now + datetime.timedelta(seconds=self.backoff.delay(attempts))
        keep([pending_row(self.stage.group_id, source, event, attempts=attempts, due=due, now=now, exc=exc)])
        metrics.EVENTS_RETRIED.labels(self.stage.name).inc()
        return True

    def _holds_dead_letters(self, source: SourceMessage) -> bool:
        """Whether a dead-lettered event keeps holding its key (Ordering.KEY, letters published, a key)."""
        return (self.stage.ordering.through_dead_letters and source.key is not None
                and self.stage.dead_letters is DeadLetterPolicy.PUBLISH)

    def _park(self, events: Sequence[tuple[SourceMessage, Event]],
              note: str = "parked while the circuit breaker was open") -> None:
        """Keep events for later without spending an attempt (the breaker is open, or the time budget is spent)."""
        now = timezone.now()
        keep([pending_row(self.stage.group_id, s, e, attempts=0, due=now, now=now, note=note) for s, e in events])

    # --- dead letters ---------------------------------------------------------------------------------
    def _record(self, source, event, exc, *, attempts, reason, first_failed_at=None) -> DeadLetterRecord:
        cls, message, tb = error_parts(exc)
        now = timezone.now()
        return DeadLetterRecord(
            source=source, stage=self.stage.name, consumer_group=self.stage.group_id, error_class=cls,
            error_message=message, traceback=tb, attempts=attempts, first_failed_at=first_failed_at or now,
            last_failed_at=now, reason=reason,
            event_id=str(event.event_id) if event else None, event_type=event.event_type if event else None,
            correlation_id=str(event.correlation_id) if event else None,
            partition_key=_key_text(event.key) if event else None,
        )

    def _dead_letter(self, records: list[DeadLetterRecord]) -> None:
        """Dead-letter (or drop) the records, unless they pass the stage's limit: then LineStopped is raised
        and none of them is written (workers.line)."""
        if not records:
            return
        self.line.dead_lettered(len(records), self.stage.name)
        if self.stage.dead_letters is DeadLetterPolicy.LOG_AND_COUNT:
            for record in records:
                metrics.EVENTS_DROPPED.labels(self.stage.name, record.reason).inc()
                what = "an invalid message" if record.reason == "invalid" else f"a message ({record.reason})"
                log.warning("dropped %s (dead-letter policy: log and count): %s", what, record.error_message,
                            extra={"stage": self.stage.name, "topic": record.source.topic,
                                   "offset": record.source.offset})
            return
        self.dead_letters.publish(records)
