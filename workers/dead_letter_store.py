"""Dead letters as rows: persist what arrives on `dead-letter-queue`, replay and discard them.

Persisting is idempotent: one row per (consumer group, event id), or per (consumer group, original topic,
partition, offset) for a message that never decoded to an event. A replayed event that fails again updates its
row (status back to new, attempts and error refreshed) instead of adding one.

Replay republishes the original bytes, key and headers unchanged (same event id, so every group's idempotency
still holds) to the original topic, adding `replay.*` headers; the consumer that succeeds on such a message
marks the dead letter resolved (`mark_replays_resolved`). The bookkeeping holds under races: rows are marked
replayed, under row locks and a status guard, before anything is published, and only the replay attempt that
is current resolves its row.
"""
from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Message
from django.core.signing import BadSignature, Signer
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from workers.dead_letter_fields import fallback_fields, row_fields
from workers.dead_letters import decode_headers
from workers.kafka import make_producer
from workers.models import DeadLetter, PendingRetry

log = logging.getLogger(__name__)
REPLAY_HEADER = "replay.dead_letter_id"
REPLAY_TOKEN_HEADER = "replay.token"
# A replayed letter that has not resolved after this long may be replayed again (its message may be lost).
REPLAY_STALE_SECONDS = 300


REFRESHED_ON_REPEAT = ("error_class", "error_message", "traceback", "attempts", "last_failed_at", "reason",
                       "malformed", "malformed_detail", "cut")


def persist(messages: Iterable[Message]) -> int:
    """Store DLQ messages as DeadLetter rows (idempotent). Returns how many rows were created.

    Each message is stored in a savepoint of its own: one that PostgreSQL refuses even after
    workers.dead_letter_fields made its fields fit is stored with its bytes and the error instead, so no
    message can make the persister read its batch again and again. Only an outage raises."""
    created = 0
    with transaction.atomic():
        for msg in messages:
            try:
                with transaction.atomic():
                    created += _store(row_fields(msg))
            except DatabaseError as exc:
                if isinstance(exc, (OperationalError, InterfaceError)):
                    raise
                log.error("dead letter stored without its context: %s", exc,
                          extra={"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()})
                with transaction.atomic():
                    created += _store(fallback_fields(msg, exc))
    return created


def _store(fields: dict) -> int:
    if fields.get("event_id") is not None:
        lookup = {"consumer_group": fields["consumer_group"], "event_id": fields["event_id"]}
    else:
        lookup = {k: fields[k] for k in ("consumer_group", "original_topic", "original_partition", "original_offset")}
    row = DeadLetter.objects.select_for_update().filter(**lookup).first()
    if row is None:
        DeadLetter.objects.create(**fields)
        return 1
    if fields["last_failed_at"] > row.last_failed_at:  # failed again after a replay
        for name in REFRESHED_ON_REPEAT:
            setattr(row, name, fields[name])
        row.status, row.status_changed_at, row.status_changed_by = DeadLetter.Status.PARKED, timezone.now(), ""
        row.status_reason, row.replay_attempt_id = "failed again after replay: parked", None
        row.save()
    return 0


# Why a dead letter can never be replayed: kind -> what the operator is told.
UNREPLAYABLE = {
    "invalid": "invalid: not an event of the contract, so a replay would fail the same way; fix the producer, "
               "then discard them",
    "cut": "cut to fit the broker: their original bytes are gone; discard them",
    "malformed": "malformed: their dead-letter context cannot be trusted; discard them",
}


def unreplayable(row: DeadLetter) -> str | None:
    """The kind of UNREPLAYABLE a dead letter is, or None when it may be replayed."""
    if row.reason == DeadLetter.Reason.INVALID:
        return "invalid"
    if row.cut:
        return "cut"
    if row.malformed:
        return "malformed"
    return None


@dataclass
class ReplayResult:
    replayed: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # UNREPLAYABLE kind -> how many
    skipped: int = 0  # not new, being replayed already, or not acknowledged by the broker


def _replayable() -> Q:
    stale = timezone.now() - datetime.timedelta(seconds=REPLAY_STALE_SECONDS)
    never = Q(reason=DeadLetter.Reason.INVALID) | ~Q(cut={}) | Q(malformed=True)  # unreplayable(), in SQL
    return (Q(status__in=[DeadLetter.Status.NEW, DeadLetter.Status.PARKED])
            | Q(status=DeadLetter.Status.REPLAYED, status_changed_at__lt=stale)) & ~never


def _claim_for_replay(ids: list[int], actor: str) -> list[DeadLetter]:
    """Mark the rows replayed with a fresh attempt id, under their row locks and a status guard, before anything
    is published: a concurrent replay or discard waits for the locks and then finds them taken."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(DeadLetter.objects.select_for_update().filter(Q(pk__in=ids) & _replayable()))
        for row in rows:
            row.status, row.status_changed_at, row.status_changed_by = DeadLetter.Status.REPLAYED, now, actor
            row.status_reason, row.replay_attempt_id = "", uuid.uuid4()
        DeadLetter.objects.bulk_update(rows, ["status", "status_changed_at", "status_changed_by", "status_reason",
                                              "replay_attempt_id"])
    return rows


def replay(rows: Iterable[DeadLetter], *, actor: str) -> ReplayResult:
    """Republish each dead letter's original message to its original topic, once, and mark it replayed.

    Eligible: new and parked rows, and replayed rows whose replay is older than REPLAY_STALE_SECONDS (its message was
    lost, say); two replays at once publish a row once. Rows `unreplayable()` are refused with their reason.
    A row the broker did not acknowledge goes back to new."""
    rows = list(rows)
    result = ReplayResult()
    for row in rows:
        if (kind := unreplayable(row)) is not None:
            result.refused[kind] = result.refused.get(kind, 0) + 1
    claimed = _claim_for_replay([row.pk for row in rows], actor)
    acked: list[int] = []
    errors: list[str] = []
    if claimed:
        producer = make_producer()
        for row in claimed:
            producer.produce(
                row.original_topic, key=bytes(row.key) if row.key is not None else None, value=bytes(row.payload),
                headers=decode_headers(row.headers) + replay_headers(row, actor),
                on_delivery=lambda err, msg, pk=row.pk: errors.append(str(err)) if err else acked.append(pk),
            )
        producer.flush(30)
    lost = [row for row in claimed if row.pk not in acked]
    for row in lost:
        DeadLetter.objects.filter(pk=row.pk, replay_attempt_id=row.replay_attempt_id,
                                  status=DeadLetter.Status.REPLAYED).update(
            status=DeadLetter.Status.NEW, status_reason="replay not acknowledged by the broker",
            replay_attempt_id=None)
    if errors:
        log.error("some replays were not acknowledged: %s", errors[:3])
    result.replayed = len(acked)
    result.skipped = len(rows) - len(acked) - sum(result.refused.values())
    return result


def replay_headers(row: DeadLetter, actor: str) -> list[tuple[str, bytes]]:
    """The replay.* headers: which letter, and a token signed with SECRET_KEY binding this attempt to this letter
    and this event, so a header copied onto another message resolves nothing."""
    token = _signer().sign(f"{row.dead_letter_id}:{row.replay_attempt_id}:{row.event_id}")
    return [(REPLAY_HEADER, str(row.dead_letter_id).encode()), (REPLAY_TOKEN_HEADER, token.encode()),
            ("replay.by", actor.encode()), ("replay.at", timezone.now().isoformat().encode())]


def _signer() -> Signer:
    return Signer(salt="workers.dead_letter_store.replay")


def _token_parts(token: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID] | None:
    """(dead letter id, replay attempt id, event id) of a genuine replay token; None for any other string."""
    try:
        letter, attempt, event = _signer().unsign(token).split(":")
        return uuid.UUID(letter), uuid.UUID(attempt), uuid.UUID(event)
    except (BadSignature, ValueError):
        return None


def is_current_replay(token: str, event_id: uuid.UUID, consumer_group: str) -> bool:
    """Whether `token` is a genuine replay token naming this event and the current replay attempt of one of this
    group's dead letters (another group's replay, or a stale copy of an older attempt, is not)."""
    parts = _token_parts(token)
    if parts is None or parts[2] != event_id:
        return False
    return DeadLetter.objects.filter(dead_letter_id=parts[0], replay_attempt_id=parts[1], event_id=event_id,
                                     consumer_group=consumer_group, status=DeadLetter.Status.REPLAYED).exists()


def discard(rows: Iterable[DeadLetter], *, actor: str, reason: str) -> int:
    """Mark the letters discarded; the keys they held (workers.ordering) are released in the same transaction,
    so the events waiting behind them run."""
    ids = [row.pk for row in rows]
    with transaction.atomic():
        locked = list(DeadLetter.objects.select_for_update().filter(pk__in=ids).exclude(
            status__in=[DeadLetter.Status.RESOLVED, DeadLetter.Status.DISCARDED]).values_list(
            "pk", "consumer_group", "event_id"))
        holds = Q()
        for _, group, event_id in locked:
            if event_id is not None:
                holds |= Q(consumer=group, event_id=event_id)
        if holds:
            PendingRetry.objects.filter(holds, dead_lettered=True).delete()
        return DeadLetter.objects.filter(pk__in=[pk for pk, _, _ in locked]).update(
            status=DeadLetter.Status.DISCARDED, status_changed_at=timezone.now(), status_changed_by=actor,
            status_reason=reason, replay_attempt_id=None,
        )


def mark_replays_resolved(handled: Iterable[tuple[str, uuid.UUID]], *, consumer_group: str) -> int:
    """Called by a consumer after it handled replayed messages, with (replay token, id of the event it handled).
    A row resolves only for its own group (other groups read the replayed message too, and skip it), and only
    when the token is genuine, names the row's current replay attempt, and names the event that was handled."""
    resolved = 0
    for token, event_id in handled:
        parts = _token_parts(token)
        if parts is None:
            log.warning("replay token refused", extra={"consumer_group": consumer_group})
            continue
        letter_id, attempt_id, named_event = parts
        if named_event != event_id:
            continue
        resolved += DeadLetter.objects.filter(
            dead_letter_id=letter_id, replay_attempt_id=attempt_id, event_id=event_id,
            consumer_group=consumer_group, status=DeadLetter.Status.REPLAYED,
        ).update(status=DeadLetter.Status.RESOLVED, status_changed_at=timezone.now(),
                 status_reason="replay succeeded")
    return resolved


PERSISTER_GROUP = "dead-letter-persisters"


def persist_batch(consumer, *, batch_size: int = 500, wait: float = 0.5) -> int:
    """One poll of the DLQ consumer: store the batch, then commit its offsets. Returns messages stored."""
    messages = [m for m in consumer.consume(num_messages=batch_size, timeout=wait) if not m.error()]
    if not messages:
        return 0
    persist(messages)
    consumer.commit(asynchronous=False)  # auto offset store is off: commit exactly what we consumed
    return len(messages)
