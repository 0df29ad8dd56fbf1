"""The transactional outbox: `emit()` inside a transaction, publish after commit, relay what is left.

The seed published after committing, so a crash between the two lost the next stage's event for good. Here an
emitted event is an OutboxEvent row written in the same transaction as the state change, born with an
OutboxPending row; once the transaction commits it is handed to an idempotent producer at once (low latency),
and its pending row is deleted when the broker's delivery report arrives. `relay_outbox` publishes any row still
pending after a grace period (the process died, the broker was down), so every committed event reaches Kafka at
least once; consumers are idempotent.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

import msgspec
from confluent_kafka import KafkaError, Message, Producer
from django.db import connection, transaction
from django.utils import timezone

from workers import metrics
from workers.envelope import Event, build_event, topic_for_event_type
from workers.kafka import make_producer
from workers.models import OutboxEvent
from workers.registry import contract
from workers.sql import fetch, unnest_insert

log = logging.getLogger(__name__)


class Emission(msgspec.Struct, frozen=True):
    """One event to emit: what `emit()` takes, for `emit_many()`. A frozen msgspec Struct (one per emitted event:
    0.1 us to make, against 0.7 for a frozen dataclass)."""

    event_type: str
    payload: dict[str, Any]
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    key: str | int | None = None


def emit(
    event_type: str,
    payload: dict[str, Any],
    *,
    correlation_id: uuid.UUID,
    causation_id: uuid.UUID | None = None,
    key: str | int | None = None,
) -> Event:
    """Record an event to publish when the current transaction commits. Must run inside a transaction."""
    return emit_many([Emission(event_type, payload, correlation_id, causation_id, key)])[0]


class OutboxMessage(NamedTuple):
    """What the publisher needs of an outbox row (an OutboxEvent instance has the same attributes)."""

    pk: int
    event_id: uuid.UUID
    event_type: str
    topic: str
    key: str
    value: bytes


def prepare(emission: Emission) -> tuple[Event, OutboxMessage]:
    """The event for an emission and the outbox message that carries it (row id not known yet)."""
    event = build_event(emission.event_type, emission.payload, correlation_id=emission.correlation_id,
                        causation_id=emission.causation_id)
    key = emission.key if emission.key is not None else contract().key_of(emission.payload)
    return event, OutboxMessage(pk=0, event_id=event.event_id, event_type=event.event_type,
                                topic=topic_for_event_type(event.event_type), key=str(key), value=event.to_json())


def emit_many(emissions: Sequence[Emission]) -> list[Event]:
    """`emit()` for many events: one INSERT for all their outbox rows, one publish after commit."""
    if not connection.in_atomic_block:
        raise RuntimeError("emit() must run inside transaction.atomic(): the event commits with the state change")
    if not emissions:
        return []
    events, messages = zip(*(prepare(e) for e in emissions))
    # One INSERT for the whole batch (workers/sql.py says why not bulk_create); each message learns its row id,
    # which the "sent" mark needs.
    ids = dict(unnest_insert(
        "outbox_events",
        {"event_id": "uuid", "event_type": "text", "topic": "text", "key": "text", "value": "bytea",
         "correlation_id": "uuid"},
        {"event_id": [m.event_id for m in messages], "event_type": [m.event_type for m in messages],
         "topic": [m.topic for m in messages], "key": [m.key for m in messages],
         "value": [m.value for m in messages], "correlation_id": [event.correlation_id for event in events]},
        constants={"created_at": "clock_timestamp()", "publish_attempts": "0", "last_error": "''"},
        returning="event_id, id",
    ))
    rows = [m._replace(pk=ids[m.event_id]) for m in messages]
    transaction.on_commit(lambda: publisher().publish(rows))
    return list(events)


# Follows the CTE `change`: one outbox row per row the change returned (exactly one for `emit_with`; one or none
# for `emit_when`, whose change may refuse to make its row).
OUTBOX_ROW_AFTER_CHANGE_SQL = """
INSERT INTO outbox_events (event_id, event_type, topic, key, value, correlation_id, created_at, publish_attempts,
                           last_error)
SELECT %s, %s, %s, %s, %s, %s, clock_timestamp(), 0, '' FROM change
RETURNING id
"""


def _outbox_params(event: Event, message: OutboxMessage) -> list[Any]:
    return [message.event_id, message.event_type, message.topic, message.key, message.value, event.correlation_id]


def _publish_on_commit(row: OutboxMessage) -> None:
    transaction.on_commit(lambda: publisher().publish([row]))  # at once unless an outer transaction is open


def emit_with(change_sql: str, change_params: Sequence[Any], emission: Emission) -> Event:
    """Make a state change and emit its event in ONE statement, for a hot path outside any transaction.

    `change_sql` is a data-modifying statement with RETURNING (e.g. `INSERT INTO payments ... RETURNING id`);
    it becomes the CTE `change`, and the outbox row is inserted from it, so PostgreSQL commits both or neither.
    In autocommit that is one round trip where BEGIN, the change, the outbox INSERT and COMMIT take four
    (the payment webhook: docs/benchmarks.md). The event is published right after, like `emit()`'s."""
    event, message = prepare(emission)
    sql = f"WITH change AS ({change_sql}) {OUTBOX_ROW_AFTER_CHANGE_SQL}"
    [(pk,)] = fetch(sql, [*change_params, *_outbox_params(event, message)])
    _publish_on_commit(message._replace(pk=pk))
    return event


def emit_when(
    facts_sql: str, facts_params: Sequence[Any], change_sql: str, change_params: Sequence[Any], emission: Emission
) -> tuple[tuple, Event | None]:
    """`emit_with` for a change that depends on what the database holds, still in ONE statement: the checks, the
    change and its outbox row, where reading the facts first would cost a round trip of its own.

    `facts_sql` is a SELECT of exactly one row and becomes the CTE `facts`; `change_sql` reads FROM facts and
    makes its row only when they allow it (its WHERE). Data-modifying CTEs run to completion in the statement's
    one snapshot, so the outbox row exists exactly when the change's row does. Returns (the facts row, the
    emitted event), or (the facts row, None) when the change made no row and nothing was emitted."""
    event, message = prepare(emission)
    sql = (f"WITH facts AS ({facts_sql}), change AS ({change_sql}), emitted AS ({OUTBOX_ROW_AFTER_CHANGE_SQL})"
           " SELECT facts.*, (SELECT id FROM emitted) FROM facts")
    [(*facts, pk)] = fetch(sql, [*facts_params, *change_params, *_outbox_params(event, message)])
    if pk is None:
        return tuple(facts), None
    _publish_on_commit(message._replace(pk=pk))
    return tuple(facts), event


class OutboxPublisher:
    """Publishes outbox rows with one idempotent producer and marks them sent on the broker's delivery report.

    Delivery reports arrive during `poll()`/`flush()`; `mark_delivered()` turns the collected ids into one
    DELETE of their pending rows. Thread-safe enough for gunicorn threads: the producer is thread-safe and the
    id list has a lock.
    """

    def __init__(self, producer: Producer | None = None) -> None:
        self.producer = producer if producer is not None else make_producer()
        self._delivered: list[int] = []
        self._failed: dict[int, str] = {}  # row id -> why the broker or the producer refused it
        self._lock = threading.Lock()

    def _on_delivery(self, row_id: int, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            with self._lock:
                self._delivered.append(row_id)
        else:
            self._refused(row_id, str(err))

    def _refused(self, row_id: int, error: str) -> None:
        log.warning("outbox publish failed", extra={"outbox_id": row_id, "error": error})
        metrics.OUTBOX_PUBLISH_FAILED.inc()
        with self._lock:
            self._failed[row_id] = error

    def publish(self, rows: Iterable[OutboxEvent | OutboxMessage]) -> int:
        count = 0
        for row in rows:
            try:
                self.producer.produce(
                    row.topic,
                    key=row.key.encode(),
                    value=bytes(row.value),
                    headers=[("event_type", row.event_type.encode()), ("event_id", str(row.event_id).encode())],
                    on_delivery=lambda err, msg, row_id=row.pk: self._on_delivery(row_id, err, msg),
                )
                count += 1
            except BufferError:
                self.producer.poll(0.5)  # local queue full: let it drain; the relay sends the rest
                break
            except Exception as exc:  # this row only (too large, say): the relay has it; the others go on
                self._refused(row.pk, f"{type(exc).__name__}: {exc}")
        self.producer.poll(0)
        return count

    def take_delivered(self) -> list[int]:
        with self._lock:
            ids, self._delivered = self._delivered, []
        return ids

    def take_failed(self) -> dict[int, str]:
        with self._lock:
            failed, self._failed = self._failed, {}
        return failed

    def mark_delivered(self) -> int:
        """Mark rows whose delivery the broker confirmed as sent. Returns how many."""
        self.producer.poll(0)
        self.take_failed()  # the relay publishes those rows again; only its own publisher keeps their errors
        ids = self.take_delivered()
        if ids:
            mark_sent(ids)
            metrics.OUTBOX_SENT.inc(len(ids))
        return len(ids)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for outstanding deliveries (up to timeout), mark them sent; returns messages still queued."""
        remaining = self.producer.flush(timeout)
        self.mark_delivered()
        return remaining


def mark_sent(ids: Sequence[int]) -> None:
    """The broker acknowledged these outbox rows: delete their pending rows (a row already marked is skipped)."""
    if not ids:
        return
    fetch("DELETE FROM outbox_pending WHERE outbox_id = ANY(%b::bigint[])", [list(ids)])


def mark_sent_in_background(
    outbox: OutboxPublisher, interval: float = 0.25, stop: threading.Event | None = None
) -> threading.Thread:
    """For a web worker, and a consumer's `run()`: a daemon thread that marks the rows this process published as
    sent, every `interval` seconds. Without it the relay would publish every such row a second
    time after its grace period (harmless for idempotent consumers, but twice the traffic and a duplicate for
    every consumer to skip). The thread has its own database connection; a failure is logged and retried."""
    stop = stop or threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            try:
                outbox.mark_delivered()
            except Exception:
                log.exception("marking outbox rows sent failed")
                connection.close()
        connection.close()

    thread = threading.Thread(target=run, name="outbox-sent-marker", daemon=True)
    thread.start()
    return thread


_publisher: OutboxPublisher | None = None
_publisher_lock = threading.Lock()


def publisher(**producer_overrides: Any) -> OutboxPublisher:
    """The process-wide publisher, created on first use with these producer settings (a web worker's linger,
    enrollment.warmup); later calls get the same one whatever they pass."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = OutboxPublisher(make_producer(**producer_overrides))
        return _publisher


# A pending row whose outbox row is gone (deleted by hand: outbox_pending has no foreign key, models.py says why).
ORPHANED_PENDING_SQL = """
DELETE FROM outbox_pending p WHERE NOT EXISTS (SELECT 1 FROM outbox_events o WHERE o.id = p.outbox_id)
"""


def prune(*, outbox_days: int, processed_days: int) -> dict[str, int]:
    """Delete sent outbox rows and processed events past their retention (an outbox row by its creation time:
    it was sent within seconds of it, or is kept while it is not).

    A processed event is kept while an unresolved dead letter (new or replayed) names the same event: a
    replay republishes the event to its topic, where every other group reads it again, and those groups
    need their processed-event row to skip it. Processed events are never pruned younger than the topics keep
    their events (settings.KAFKA_TOPIC_RETENTION_DAYS): a group reset to offset 0 must still skip them.
    """
    from django.conf import settings

    from workers.models import DeadLetter, ProcessedEvent

    if outbox_days < 1:
        raise ValueError(f"outbox retention must be at least 1 day, not {outbox_days}")
    if processed_days < max(settings.KAFKA_TOPIC_RETENTION_DAYS, 1):
        raise ValueError(f"processed-event retention ({processed_days} days) must be at least the topics' "
                         f"retention (KAFKA_TOPIC_RETENTION_DAYS = {settings.KAFKA_TOPIC_RETENTION_DAYS} days)")

    now = timezone.now()
    cutoff = now - timedelta(days=outbox_days)
    outbox_deleted, _ = OutboxEvent.objects.sent().filter(created_at__lt=cutoff).delete()
    fetch(ORPHANED_PENDING_SQL)
    unresolved = DeadLetter.objects.filter(
        status__in=[DeadLetter.Status.NEW, DeadLetter.Status.REPLAYED, DeadLetter.Status.PARKED],
        event_id__isnull=False,
    ).values("event_id")
    processed_deleted, _ = (
        ProcessedEvent.objects.filter(processed_at__lt=now - timedelta(days=processed_days))
        .exclude(event_id__in=unresolved)
        .delete()
    )
    return {"outbox_events": outbox_deleted, "processed_events": processed_deleted}
