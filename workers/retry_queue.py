"""Operator actions on the retry queue (PendingRetry rows), from the admin; each leaves one RetryQueueAction row.

- **Retry now**: the selected rows become due at once; the stage's consumers run them on their next chores tick
  (within a second), under key order only once they are the head of their key, as always.
- **Discard**: the selected rows leave the queue, and each message is kept as a *discarded* dead letter, with its
  payload, headers, last error, who and why: nothing is lost, and the dead-letter admin can still replay it.
  Under key order the next event of the key becomes the head and runs.

Neither touches a row that holds its key for a dead letter (that dead letter is what to replay or discard), nor
one a consumer is retrying at this moment (its lock is held; select it again in a second)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from workers.envelope import InvalidEvent, decode
from workers.models import DeadLetter, PendingRetry, RetryQueueAction
from workers.registry import stages


@dataclass(frozen=True)
class Outcome:
    done: int
    held: int  # rows holding their key for a dead letter: act on the dead letter
    busy: int  # rows being retried right now


def retry_now(rows: Iterable[PendingRetry], *, actor: str) -> Outcome:
    return _act(rows, actor=actor, action=RetryQueueAction.Action.RETRY_NOW, reason="")


def discard(rows: Iterable[PendingRetry], *, actor: str, reason: str) -> Outcome:
    if not reason.strip():
        raise ValueError("a discard needs a reason")
    return _act(rows, actor=actor, action=RetryQueueAction.Action.DISCARD, reason=reason.strip())


def _act(rows: Iterable[PendingRetry], *, actor: str, action: str, reason: str) -> Outcome:
    selected = [r.pk for r in rows]
    with transaction.atomic():
        held = PendingRetry.objects.filter(pk__in=selected, dead_lettered=True).count()
        free = list(PendingRetry.objects.filter(pk__in=selected, dead_lettered=False)
                    .select_for_update(skip_locked=True).order_by("pk"))
        busy = len(selected) - held - len(free)
        if action == RetryQueueAction.Action.RETRY_NOW:
            PendingRetry.objects.filter(pk__in=[r.pk for r in free]).update(next_attempt_at=timezone.now())
        else:
            for row in free:
                _keep_as_discarded(row, actor=actor, reason=reason)
            PendingRetry.objects.filter(pk__in=[r.pk for r in free]).delete()
        RetryQueueAction.objects.create(actor=actor, action=action, count=len(free), reason=reason,
                                        event_ids=[str(r.event_id) for r in free])
    return Outcome(done=len(free), held=held, busy=busy)


def stage_of(group: str) -> str:
    return next((s.name for s in stages() if s.group_id == group), group)


def _keep_as_discarded(row: PendingRetry, *, actor: str, reason: str) -> None:
    try:
        event = decode(bytes(row.value))
        event_type, key = event.event_type, str(event.key)
    except InvalidEvent:
        event_type, key = "", None
    now = timezone.now()
    DeadLetter.objects.update_or_create(
        consumer_group=row.consumer, event_id=row.event_id,
        defaults={
            "stage": stage_of(row.consumer), "event_type": event_type, "original_topic": row.topic,
            "original_partition": row.partition, "original_offset": row.offset,
            "key": None if row.key is None else bytes(row.key), "payload": bytes(row.value),
            "headers": row.headers,  # both tables keep headers as workers.dead_letters.encode_headers does
            "error_class": row.error_class, "error_message": row.error_message, "traceback": row.traceback,
            "attempts": row.attempts, "first_failed_at": row.first_failed_at, "last_failed_at": row.last_failed_at,
            "correlation_id": row.correlation_id, "partition_key": key,
            "status": DeadLetter.Status.DISCARDED, "status_changed_at": now, "status_changed_by": actor,
            "status_reason": f"discarded from the retry queue: {reason}",
        })
