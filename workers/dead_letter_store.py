"""Dead letters as rows: persist what arrives on `dead-letter-queue`, replay and discard them.

Persisting is idempotent: one row per (consumer group, event id), or per (consumer group, original topic,
partition, offset) for a message that never decoded to an event. A replayed event that fails again updates its
row (status back to new, attempts and error refreshed) instead of adding one.

Replay republishes the original bytes, key and headers unchanged (same event id, so every group's idempotency
still holds) to the original topic, adding `replay.*` headers; the consumer that succeeds on such a message
marks the dead letter resolved (`mark_replays_resolved`).
"""
from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable

from confluent_kafka import Message
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from workers.dead_letters import context_from_headers, decode_headers, encode_headers
from workers.kafka import make_producer
from workers.models import DeadLetter

log = logging.getLogger(__name__)
REPLAY_HEADER = "replay.dead_letter_id"


def _int(value: str | None, default: int | None = 0) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _when(value: str | None) -> datetime.datetime:
    parsed = parse_datetime(value) if value else None
    return parsed or timezone.now()


def row_fields(msg: Message) -> dict:
    """The DeadLetter fields of one DLQ message."""
    context, original_headers = context_from_headers(msg.headers())
    return {
        "stage": context.get("stage", "unknown"),
        "consumer_group": context.get("consumer_group", "unknown"),
        "event_id": _uuid(context.get("event_id")),
        "event_type": context.get("event_type", ""),
        "original_topic": context.get("original_topic", msg.topic()),
        "original_partition": _int(context.get("original_partition"), msg.partition()),
        "original_offset": _int(context.get("original_offset"), msg.offset()),
        "key": msg.key(),
        "headers": encode_headers(original_headers),
        "payload": msg.value() or b"",
        "error_class": context.get("error_class", ""),
        "error_message": context.get("error_message", ""),
        "traceback": context.get("traceback", ""),
        "attempts": _int(context.get("attempts")),
        "first_failed_at": _when(context.get("first_failed_at")),
        "last_failed_at": _when(context.get("last_failed_at")),
        "correlation_id": _uuid(context.get("correlation_id")),
        "partition_key": context.get("partition_key") or None,
    }


REFRESHED_ON_REPEAT = ("error_class", "error_message", "traceback", "attempts", "last_failed_at")


def persist(messages: Iterable[Message]) -> int:
    """Store DLQ messages as DeadLetter rows (idempotent). Returns how many rows were created."""
    created = 0
    with transaction.atomic():
        for msg in messages:
            fields = row_fields(msg)
            if fields["event_id"] is not None:
                lookup = {"consumer_group": fields["consumer_group"], "event_id": fields["event_id"]}
            else:
                lookup = {k: fields[k] for k in ("consumer_group", "original_topic", "original_partition",
                                                 "original_offset")}
            row = DeadLetter.objects.select_for_update().filter(**lookup).first()
            if row is None:
                DeadLetter.objects.create(**fields)
                created += 1
                continue
            if fields["last_failed_at"] > row.last_failed_at:  # failed again after a replay
                for name in REFRESHED_ON_REPEAT:
                    setattr(row, name, fields[name])
                row.status, row.status_changed_at, row.status_changed_by = DeadLetter.Status.NEW, timezone.now(), ""
                row.status_reason = "failed again after replay"
                row.save()
    return created


def replay(rows: Iterable[DeadLetter], *, actor: str) -> int:
    """Republish each dead letter's original message to its original topic; mark the rows replayed."""
    rows = [row for row in rows if row.status in (DeadLetter.Status.NEW, DeadLetter.Status.REPLAYED)]
    if not rows:
        return 0
    producer = make_producer()
    acked: list[int] = []
    errors: list[str] = []
    now = timezone.now()
    for row in rows:
        headers = decode_headers(row.headers) + [
            (REPLAY_HEADER, str(row.dead_letter_id).encode()),
            ("replay.by", actor.encode()),
            ("replay.at", now.isoformat().encode()),
        ]
        producer.produce(
            row.original_topic, key=bytes(row.key) if row.key is not None else None, value=bytes(row.payload),
            headers=headers,
            on_delivery=lambda err, msg, pk=row.pk: errors.append(str(err)) if err else acked.append(pk),
        )
    producer.flush(30)
    DeadLetter.objects.filter(pk__in=acked).update(
        status=DeadLetter.Status.REPLAYED, status_changed_at=now, status_changed_by=actor, status_reason=""
    )
    if errors:
        log.error("some replays were not acknowledged: %s", errors[:3])
    return len(acked)


def discard(rows: Iterable[DeadLetter], *, actor: str, reason: str) -> int:
    ids = [row.pk for row in rows if row.status != DeadLetter.Status.RESOLVED]
    return DeadLetter.objects.filter(pk__in=ids).update(
        status=DeadLetter.Status.DISCARDED, status_changed_at=timezone.now(), status_changed_by=actor,
        status_reason=reason,
    )


def mark_replays_resolved(dead_letter_ids: Iterable[str], *, consumer_group: str) -> int:
    """Called by a consumer after it handled replayed messages; only its own group's dead letters resolve
    (other groups read the replayed message too, and skip it)."""
    ids = [u for u in (_uuid(i) for i in dead_letter_ids) if u]
    if not ids:
        return 0
    return DeadLetter.objects.filter(
        dead_letter_id__in=ids, consumer_group=consumer_group, status=DeadLetter.Status.REPLAYED
    ).update(
        status=DeadLetter.Status.RESOLVED, status_changed_at=timezone.now(), status_reason="replay succeeded"
    )


PERSISTER_GROUP = "dead-letter-persisters"


def persist_batch(consumer, *, batch_size: int = 500, wait: float = 0.5) -> int:
    """One poll of the DLQ consumer: store the batch, then commit its offsets. Returns messages stored."""
    messages = [m for m in consumer.consume(num_messages=batch_size, timeout=wait) if not m.error()]
    if not messages:
        return 0
    persist(messages)
    consumer.commit(asynchronous=False)  # auto offset store is off: commit exactly what we consumed
    return len(messages)
