"""The relay's pass costs what can be due, not the outbox's history: it reads pending rows up to an id bound
(`workers.relay.DueBound`) and finds each outbox row by its primary key."""
import datetime
import time

import pytest
from django.db import connection
from django.utils import timezone

from tests.workers import support
from workers.envelope import topic_for_event_type
from workers.models import OutboxEvent, OutboxPending
from workers.outbox import OutboxPublisher
from workers.relay import DUE_SQL, DueBound, relay_once

pytestmark = pytest.mark.django_db(transaction=True)


def _row(n: int, *, age: datetime.timedelta) -> OutboxEvent:
    event = support.purchase_created(n)
    row = OutboxEvent.objects.create(event_id=event.event_id, event_type=event.event_type,
                                     topic=topic_for_event_type(event.event_type), key=str(n), value=event.to_json(),
                                     correlation_id=event.correlation_id)
    OutboxEvent.objects.filter(pk=row.pk).update(created_at=timezone.now() - age)
    return row


def test_the_bound_is_the_newest_id_seen_a_grace_period_ago():
    bound = DueBound(grace_seconds=0.3)
    first = _row(1, age=datetime.timedelta(0))
    assert bound() == first.pk  # no reading that old yet: everything up to the newest
    second = _row(2, age=datetime.timedelta(0))
    assert bound() == second.pk
    time.sleep(0.35)
    third = _row(3, age=datetime.timedelta(0))
    assert bound() == second.pk  # the newest reading at least 0.3 s old
    time.sleep(0.35)
    assert bound() == third.pk


def test_a_row_past_the_bound_goes_out_on_a_later_pass(topic_prefix):
    """A row inserted after the bound's reading is left to the next pass whose bound covers it, even when its
    created_at already says it is due (here set back by hand): the bound delays it by a grace period at most."""
    relay, bound = OutboxPublisher(), DueBound(grace_seconds=0.3)
    due = _row(1, age=datetime.timedelta(minutes=1))
    assert relay_once(relay, grace_seconds=0.3, due_bound=bound) == 1  # first pass: up to the newest id
    time.sleep(0.35)
    late = _row(2, age=datetime.timedelta(minutes=1))
    assert relay_once(relay, grace_seconds=0.3, due_bound=bound) == 0
    assert OutboxPending.objects.filter(outbox_id=late.pk).exists()
    time.sleep(0.35)
    assert relay_once(relay, grace_seconds=0.3, due_bound=bound) == 1
    assert not OutboxPending.objects.filter(outbox_id__in=[due.pk, late.pk]).exists()
    assert {m.value() for m in support.read_topic("purchase-created", 2)} == {bytes(due.value), bytes(late.value)}


def _bulk_rows(cur, n: int, age: str) -> None:
    cur.execute("INSERT INTO outbox_events (event_id, event_type, topic, key, value, created_at, publish_attempts,"
                " last_error) SELECT gen_random_uuid(), 'x', 't', 'k', '\\x00', now() - %s::interval, 0, ''"
                " FROM generate_series(1, %s)", [age, n])


def test_a_pass_reads_neither_the_sent_rows_nor_those_in_flight():
    """Thousands of sent rows, a few due ones, thousands just handed to their producers (pending, younger than the
    grace period): PostgreSQL's plan for the pass walks the pending rows under the bound and looks each outbox row
    up by key. Filtered on created_at alone, it hashed the outbox table (a sequential scan) on every pass."""
    with connection.cursor() as cur:
        _bulk_rows(cur, 20000, "1 day")
        cur.execute("DELETE FROM outbox_pending")  # those were sent
        due = [_row(n, age=datetime.timedelta(minutes=1)) for n in range(1, 4)]
        _bulk_rows(cur, 3000, "0 seconds")
        cur.execute("ANALYZE outbox_events")
        cur.execute("ANALYZE outbox_pending")
        now = timezone.now()
        cur.execute("EXPLAIN " + DUE_SQL, [due[-1].pk, now - datetime.timedelta(seconds=2), now, 1000])
        plan = "\n".join(line for (line,) in cur.fetchall())
    assert "Seq Scan on outbox_events" not in plan, plan
    assert "outbox_events_pkey" in plan, plan
