"""Retries that do not stall the partition, survive a restart, and stop at the stage's limit."""
import time

import pytest

from tests.workers import support
from workers.models import PendingRetry, ProcessedEvent
from workers.retry import Backoff

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("attempts", "nominal", "low", "high"),
    [(1, 1, 0.5, 1), (2, 2, 1, 2), (3, 4, 2, 4), (4, 8, 4, 8), (5, 16, 8, 16), (9, 256, 128, 256),
     (10, 300, 150, 300), (30, 300, 150, 300)],
)
def test_backoff_table(attempts, nominal, low, high):
    backoff = Backoff(base_seconds=1, max_seconds=300)
    assert backoff.nominal(attempts) == nominal
    assert backoff.delay(attempts, rand=lambda: 0.0) == low
    assert backoff.delay(attempts, rand=lambda: 1.0) == high


def test_a_waiting_retry_does_not_stall_the_events_behind_it(make_consumer_for, group_id):
    blocked = support.purchase_created(1)
    behind = [support.purchase_created(i) for i in range(2, 6)]
    support.SCRIPT[1] = ["transient", "transient"]
    support.produce_events([blocked])
    consumer = make_consumer_for(batch_size=1)  # one event per batch: strictly in partition order
    support.poll_until(consumer, lambda: PendingRetry.objects.filter(event_id=blocked.event_id).exists())
    support.produce_events(behind)
    support.poll_until(consumer, lambda: support.effects(behind) == 4)
    # everything behind it is done while the first one still waits, and its offset is committed too
    assert support.effects([blocked]) == 0
    assert support.committed_offset(group_id, "purchase-created") == 5
    support.poll_until(consumer, lambda: support.effects([blocked]) == 1)
    assert not PendingRetry.objects.exists()
    assert support.CALLS[blocked.event_id] == 3


def test_attempt_count_and_due_time_survive_a_restart(make_consumer_for, settings, group_id):
    settings.RETRY_BASE_SECONDS, settings.RETRY_MAX_SECONDS = 60, 600  # the retry is far in the future
    event = support.purchase_created(7)
    support.SCRIPT[7] = ["transient", "transient"]
    support.produce_events([event])
    first = make_consumer_for()
    support.poll_until(first, lambda: PendingRetry.objects.exists())
    first.close()
    row = PendingRetry.objects.get()
    assert (row.attempts, row.error_class) == (1, "workers.errors.TransientError")
    assert row.next_attempt_at.timestamp() - time.time() > 25

    # a new process of the group sees the same record: nothing runs before the due time
    second = make_consumer_for()
    for _ in range(5):
        second.poll_once()
    assert support.CALLS[event.event_id] == 1
    PendingRetry.objects.update(next_attempt_at=row.next_attempt_at.replace(year=2000))  # time passes
    support.poll_until(second, lambda: PendingRetry.objects.get().attempts == 2)
    PendingRetry.objects.update(next_attempt_at=row.next_attempt_at.replace(year=2000))
    support.poll_until(second, lambda: support.effects([event]) == 1)
    assert ProcessedEvent.objects.filter(consumer=group_id, event_id=event.event_id).count() == 1


def test_after_the_last_attempt_the_event_is_dead_lettered_with_its_count(make_consumer_for, group_id):
    event = support.purchase_created(3)
    support.SCRIPT[3] = ["bug"] * 10
    support.produce_events([event])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.CALLS[event.event_id] == 3
                       and PendingRetry.objects.filter(dead_lettered=True).exists())
    [dlq] = support.dead_letters(1)
    headers = dict(dlq.headers())
    assert headers["dlq.attempts"] == b"3"
    assert headers["dlq.reason"] == b"exhausted"
    assert headers["dlq.error_class"] == b"builtins.KeyError"
    assert dlq.value() == event.to_json()
    assert support.effects([event]) == 0


def test_a_permanent_error_is_dead_lettered_at_once(make_consumer_for):
    event = support.purchase_created(4)
    support.SCRIPT[4] = ["permanent"]
    support.produce_events([event])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.CALLS[event.event_id] >= 1)
    [dlq] = support.dead_letters(1)
    assert dict(dlq.headers())["dlq.reason"] == b"permanent"
    assert dict(dlq.headers())["dlq.attempts"] == b"1"
    assert list(PendingRetry.objects.values_list("event_id", "dead_lettered")) == [(event.event_id, True)]


def test_a_message_with_binary_headers_waits_for_its_retry_with_them_intact(make_consumer_for, group_id):
    from workers.kafka import make_producer, topic

    event = support.purchase_created(8)
    support.SCRIPT[8] = ["transient"]
    headers = [("trace", b"\x00\xff binary"), ("empty", None)]
    producer = make_producer()
    producer.produce(topic("purchase-created"), key=b"8", value=event.to_json(), headers=headers, partition=0)
    producer.flush(10)
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: PendingRetry.objects.exists())
    from workers.dead_letters import decode_headers

    assert decode_headers(PendingRetry.objects.get().headers) == headers
    support.poll_until(consumer, lambda: support.effects([event]) == 1)
