"""Due retries run one transaction per row within a time budget, and the half-open probe tells "nothing waits"
from "another worker holds what waits"."""
import datetime
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.workers import support
from workers.dead_letters import DeadLetterPublisher, SourceMessage
from workers.kafka import make_producer, topic
from workers.models import PendingRetry
from workers.pending import keep, pending_row
from workers.processing import Processor
from workers.retry import Backoff, CircuitBreaker

pytestmark = pytest.mark.django_db(transaction=True)


def _processor(stage, *, dead_letters=None, breaker=None) -> Processor:
    return Processor(stage, backoff=Backoff(0.2, 1.0), breaker=breaker or CircuitBreaker("test"),
                     dead_letters=dead_letters or DeadLetterPublisher(make_producer()))


def _waiting(group_id, events_or_values, *, seconds_ago: float = 10.0) -> None:
    """PendingRetry rows, due in the order given (a raw value stands for a row stored before the contract
    tightened: it no longer decodes)."""
    now = timezone.now()
    rows = []
    for position, item in enumerate(events_or_values):
        event = item if not isinstance(item, bytes) else support.purchase_created(900 + position)
        value = item if isinstance(item, bytes) else item.to_json()
        source = SourceMessage(topic("purchase-created"), 0, position, str(event.key).encode(), value)
        due = now - datetime.timedelta(seconds=seconds_ago - position)
        rows.append(pending_row(group_id, source, event, attempts=1, due=due, now=now))
    keep(rows)


def test_a_retry_whose_dead_letter_fails_rolls_back_alone_and_waits_behind_the_others(topic_prefix, group_id):
    good = [support.purchase_created(i) for i in (1, 2)]
    _waiting(group_id, [b"no longer an event", *good])
    unreachable = make_producer(**{"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1000})
    processor = _processor(support.make_stage(group_id),
                           dead_letters=DeadLetterPublisher(unreachable, timeout=3))
    processor.run_due()
    assert support.effects(good) == 2  # not rolled back with the poison row
    [poison] = PendingRetry.objects.all()
    assert bytes(poison.value) == b"no longer an event"
    assert poison.next_attempt_at > timezone.now()  # postponed: the next run does not start with it again


def test_a_row_that_no_longer_decodes_is_dead_lettered_on_its_own(topic_prefix, group_id):
    good = support.purchase_created(3)
    _waiting(group_id, [b"{broken", good])
    _processor(support.make_stage(group_id)).run_due()
    assert support.effects([good]) == 1
    assert not PendingRetry.objects.exists()
    [letter] = support.dead_letters(1)
    headers = dict(letter.headers())
    assert headers["dlq.reason"] == b"invalid" and b"not JSON" in headers["dlq.error_message"]
    assert letter.value() == b"{broken"


def _slow_handler(event) -> None:
    time.sleep(0.2)
    support.scripted_handler(event)


def test_due_retries_stop_at_the_time_budget_and_the_rest_wait_for_the_next_run(topic_prefix, group_id):
    events = [support.purchase_created(i) for i in range(10, 20)]
    _waiting(group_id, events)
    processor = _processor(support.make_stage(group_id, handler=_slow_handler))
    attempted = processor.run_due(budget_seconds=0.5)
    assert 1 <= attempted < 10
    assert support.effects(events) == attempted
    assert PendingRetry.objects.count() == 10 - attempted
    while PendingRetry.objects.exists():
        processor.run_due(budget_seconds=0.5)
    assert support.effects(events) == 10


def _failing_batch(events) -> None:
    raise RuntimeError("the batch call failed")


def test_a_falling_back_batch_parks_what_is_past_the_time_budget(topic_prefix, group_id, settings):
    settings.WORKER_TIME_BUDGET_SECONDS = 0.5
    events = [support.purchase_created(i) for i in range(20, 30)]
    processor = _processor(support.make_stage(group_id, handler=_slow_handler, batch_handler=_failing_batch))
    started = time.monotonic()
    processor.process([SourceMessage(topic("purchase-created"), 0, n, b"k", e.to_json())
                       for n, e in enumerate(events)])
    assert time.monotonic() - started < 2.0
    handled = support.effects(events)
    parked = PendingRetry.objects.filter(attempts=0, error_message__contains="time budget")
    assert 1 <= handled < 10 and parked.count() == 10 - handled
    while PendingRetry.objects.exists():
        processor.run_due()
    assert support.effects(events) == 10


def test_the_probe_keeps_the_breaker_half_open_while_another_worker_holds_the_waiting_rows(topic_prefix, group_id):
    event = support.purchase_created(40)
    _waiting(group_id, [event])
    clock = [0.0]
    breaker = CircuitBreaker("test", clock=lambda: clock[0])
    for _ in range(10):
        breaker.record(outage=True)
    clock[0] += 5
    assert breaker.wants_probe
    processor = _processor(support.make_stage(group_id), breaker=breaker)
    locked, release = threading.Event(), threading.Event()

    def other_worker() -> None:  # a second worker of the group is trying the row right now
        with transaction.atomic():
            list(PendingRetry.objects.select_for_update().filter(event_id=event.event_id))
            locked.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        assert processor.probe() is None
        assert breaker.state == "half_open"  # not closed by a probe that tried nothing
    finally:
        release.set()
        thread.join()
    assert processor.probe() is True
    assert breaker.state == "closed" and support.effects([event]) == 1
    assert processor.probe() is None and breaker.state == "closed"  # nothing waits at all


def test_a_redelivered_event_that_waits_for_its_retry_is_left_to_its_retry(topic_prefix, group_id):
    """After a failed commit or a rebalance, a group may read again an event it parked: running it now as well
    could dead-letter it while its retry later handles it."""
    event = support.purchase_created(50)
    _waiting(group_id, [event])
    support.SCRIPT[50] = ["permanent"]
    processor = _processor(support.make_stage(group_id))
    processor.process([SourceMessage(topic("purchase-created"), 0, 7, b"50", event.to_json())])
    assert support.CALLS[event.event_id] == 0 and PendingRetry.objects.get().event_id == event.event_id
    assert support.dead_letters(0, timeout=1) == []


def test_a_look_for_due_retries_that_finds_none_is_one_query_and_a_due_row_still_runs(topic_prefix, group_id):
    """Every consumer looks four times a second; most looks find nothing and must cost one indexed query, not the
    transaction that locks the next row (workers.retrying.ANY_DUE_SQL)."""
    from django.test.utils import CaptureQueriesContext

    event = support.purchase_created(31)
    _waiting(group_id, [event], seconds_ago=-60)  # waits, due in a minute
    processor = _processor(support.make_stage(group_id))
    with CaptureQueriesContext(connection) as looks:
        assert processor.run_due() == 0
    assert len(looks) == 1
    PendingRetry.objects.update(next_attempt_at=timezone.now())
    assert processor.run_due() == 1
    assert support.effects([event]) == 1 and not PendingRetry.objects.exists()
