"""The outbox relay: publish what was committed but not published right after its commit (the process died,
the broker was down). `manage.py relay_outbox` runs `relay_once` in a loop; several relays may run (SKIP LOCKED).
"""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from workers import metrics
from workers.outbox import OutboxMessage, OutboxPublisher, mark_sent
from workers.sql import fetch

RELAY_MAX_BACKOFF_SECONDS = 60


# The oldest pending rows past the grace period and their backoff, locked by their pending row: a publisher's
# "sent" mark of the same row waits for this transaction, and several relays skip each other's rows.
DUE_SQL = """
SELECT o.id, o.event_id, o.event_type, o.topic, o.key, o.value
FROM outbox_pending p JOIN outbox_events o ON o.id = p.outbox_id
WHERE o.created_at <= %s AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %s)
ORDER BY o.created_at, o.id LIMIT %s
FOR UPDATE OF p SKIP LOCKED
"""

POSTPONE_SQL = """
UPDATE outbox_events o SET publish_attempts = o.publish_attempts + 1, last_error = left(f.error, 2000),
       next_attempt_at = clock_timestamp() + make_interval(secs => least(power(2, o.publish_attempts), %s))
FROM unnest(%b::bigint[], %b::text[]) AS f(id, error) WHERE o.id = f.id
"""


def relay_once(
    relay: OutboxPublisher, *, grace_seconds: float = 2.0, limit: int = 1000, flush_timeout: float = 30.0
) -> int:
    """Publish unsent rows older than the grace period (rows just handed to a producer are left to it) and mark
    them sent once the broker acknowledged them. Safe in several processes (SKIP LOCKED). `relay` is the relay's
    own publisher, so the delivery reports it collects are its own. Returns the number of rows marked sent.

    A row that fails is tried again after a backoff of its own (1 s doubling to RELAY_MAX_BACKOFF_SECONDS) and
    skipped until then: rows that keep failing (a topic that does not exist, a message the broker refuses) are
    never selected first again and again, ahead of newer rows that would go through."""
    now = timezone.now()
    with transaction.atomic():
        rows = [OutboxMessage(*row) for row in fetch(DUE_SQL, [now - timedelta(seconds=grace_seconds), now, limit])]
        if not rows:
            return 0
        relay.take_failed()
        relay.publish(rows)
        relay.producer.flush(flush_timeout)
        delivered = set(relay.take_delivered())
        mark_sent(list(delivered))
        failed = relay.take_failed()
        unsent = [row.pk for row in rows if row.pk not in delivered]
        if unsent:
            fetch(POSTPONE_SQL, [RELAY_MAX_BACKOFF_SECONDS, unsent,
                                 [failed.get(pk, "not acknowledged by the broker in time") for pk in unsent]])
    metrics.OUTBOX_SENT.inc(len(delivered))
    return len(delivered)
