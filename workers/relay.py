"""The outbox relay: publish what was committed but not published right after its commit (the process died,
the broker was down). `manage.py relay_outbox` runs `relay_once` in a loop; several relays may run (SKIP LOCKED).
"""
from __future__ import annotations

import time
from collections import deque
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from workers import metrics
from workers.outbox import OutboxMessage, OutboxPublisher, mark_sent
from workers.sql import fetch

RELAY_MAX_BACKOFF_SECONDS = 60


# The oldest pending rows past the grace period and their backoff, locked by their pending row: a publisher's
# "sent" mark of the same row waits for this transaction, and several relays skip each other's rows. The pending
# rows are read in id order up to a bound (`DueBound`) and each outbox row is found by its primary key, so a pass
# costs the rows that can be due. Filtered on created_at alone, PostgreSQL hashed the whole outbox table, sent
# rows and all, on every pass (a sequential scan: 58-62 ms a pass with 60,000 rows in the end-to-end bench, and a
# running system keeps days of them).
DUE_SQL = """
SELECT o.id, o.event_id, o.event_type, o.topic, o.key, o.value
FROM outbox_pending p JOIN outbox_events o ON o.id = p.outbox_id
WHERE p.outbox_id <= %s AND o.created_at <= %s AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= %s)
ORDER BY p.outbox_id LIMIT %s
FOR UPDATE OF p SKIP LOCKED
"""
NEWEST_ID_SQL = "SELECT coalesce(max(id), 0) FROM outbox_events"

POSTPONE_SQL = """
UPDATE outbox_events o SET publish_attempts = o.publish_attempts + 1, last_error = left(f.error, 2000),
       next_attempt_at = clock_timestamp() + make_interval(secs => least(power(2, o.publish_attempts), %s))
FROM unnest(%b::bigint[], %b::text[]) AS f(id, error) WHERE o.id = f.id
"""


class DueBound:
    """The highest outbox id that can belong to a row past the grace period: the newest id seen at least
    `grace_seconds` ago, by this relay's own clock.

    An id is taken when its row is inserted, as its created_at is, so a row that is older than the grace period
    now has an id no higher than the newest id seen that long ago; a row that committed late, or was inserted in
    the same instant as the reading, falls under a later pass's bound. The bound only narrows the scan: created_at
    is still the test. Until this relay has a reading that old (its first passes), the bound is the newest id now."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self._readings: deque[tuple[float, int]] = deque()  # (monotonic time, newest outbox id), oldest first

    def __call__(self) -> int:
        now = time.monotonic()
        [(newest,)] = fetch(NEWEST_ID_SQL)
        self._readings.append((now, newest))
        old_enough = now - self.grace_seconds
        while len(self._readings) > 1 and self._readings[1][0] <= old_enough:
            self._readings.popleft()  # the newest reading old enough stays first
        first_seen, first_id = self._readings[0]
        return first_id if first_seen <= old_enough else newest


def relay_once(
    relay: OutboxPublisher, *, grace_seconds: float = 2.0, limit: int = 1000, flush_timeout: float = 30.0,
    due_bound: DueBound | None = None,
) -> int:
    """Publish unsent rows older than the grace period (rows just handed to a producer are left to it) and mark
    them sent once the broker acknowledged them. Safe in several processes (SKIP LOCKED). `relay` is the relay's
    own publisher, so the delivery reports it collects are its own. Returns the number of rows marked sent.

    A row that fails is tried again after a backoff of its own (1 s doubling to RELAY_MAX_BACKOFF_SECONDS) and
    skipped until then: rows that keep failing (a topic that does not exist, a message the broker refuses) are
    never selected first again and again, ahead of newer rows that would go through.

    A relay that runs pass after pass keeps one `due_bound` (of the same grace period) across them; without one,
    a pass looks at every pending row up to the newest."""
    bound = (due_bound or DueBound(grace_seconds))()
    now = timezone.now()
    with transaction.atomic():
        rows = [OutboxMessage(*row)
                for row in fetch(DUE_SQL, [bound, now - timedelta(seconds=grace_seconds), now, limit])]
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
