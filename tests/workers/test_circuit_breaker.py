"""An outage longer than the retry budget dead-letters nothing: the breaker opens, pauses and probes."""
import time

import pytest

from tests.workers import support
from workers import metrics
from workers.models import PendingRetry
from workers.retry import CircuitBreaker
from workers.stage import RetryPolicy

pytestmark = pytest.mark.django_db(transaction=True)


def test_breaker_opens_on_mostly_transient_failures_and_probes_after_a_while():
    now = [0.0]
    breaker = CircuitBreaker("unit", window=10, min_failures=5, open_seconds=1, max_open_seconds=4,
                             clock=lambda: now[0])
    for _ in range(4):
        breaker.record(outage=True)
    assert breaker.allows_work()  # 4 failures: not yet
    breaker.record(outage=True)
    assert not breaker.allows_work() and breaker.state == "open"
    assert metrics.BREAKER_OPEN.labels("unit")._value.get() == 1
    now[0] = 1.0
    assert breaker.wants_probe  # half open after open_seconds
    breaker.record(outage=True)  # the probe fails: open again, for twice as long
    now[0] = 2.5
    assert not breaker.wants_probe and breaker.state == "open"
    now[0] = 3.0
    assert breaker.wants_probe
    breaker.record(outage=False)
    assert breaker.state == "closed" and breaker.allows_work()
    assert metrics.BREAKER_OPEN.labels("unit")._value.get() == 0


def test_a_batch_of_successes_counts_as_that_many_single_successes():
    def breaker(clock):
        b = CircuitBreaker("unit-batch", window=10, min_failures=5, failure_ratio=0.5, open_seconds=1,
                           clock=clock)
        for _ in range(5):
            b.record(outage=True)
        return b

    now = [0.0]
    one_by_one, batched = breaker(lambda: now[0]), breaker(lambda: now[0])
    for _ in range(3):
        one_by_one.record(outage=False)
    batched.record_successes(3)
    assert one_by_one.state == batched.state == "open"  # the window still holds the five outages
    now[0] = 1.0
    assert one_by_one.wants_probe and batched.wants_probe
    one_by_one.record(outage=False)
    batched.record_successes(500)  # a batch that worked closes a half-open breaker, and the window is all successes
    assert one_by_one.state == batched.state == "closed"
    for _ in range(4):
        batched.record(outage=True)
    assert batched.allows_work()  # 4 outages in a window of 10 successes-then-outages: still closed


def test_successes_keep_the_breaker_closed():
    breaker = CircuitBreaker("unit2", window=10, min_failures=5, failure_ratio=0.5)
    for _ in range(20):
        breaker.record(outage=False)
        breaker.record(outage=False)
        breaker.record(outage=True)
    assert breaker.state == "closed"


def test_an_outage_longer_than_the_retry_budget_dead_letters_nothing(make_consumer_for, group_id):
    down = {"until": time.monotonic() + 6.0}  # retry budget: 3 attempts, 0.1-0.2 s + 0.2-0.4 s apart

    def flaky_dependency(event):
        if time.monotonic() < down["until"]:
            support.CALLS[event.event_id] += 1
            raise TimeoutError("allocation API timed out")
        support.scripted_handler(event)

    stage = support.make_stage(group_id, handler=flaky_dependency, retry=RetryPolicy(max_attempts=3))
    events = [support.purchase_created(i) for i in range(1, 31)]
    support.produce_events(events)
    consumer = make_consumer_for(stage, batch_size=5)
    support.poll_until(consumer, lambda: consumer.breaker.state != "closed")
    # while it is open: partitions paused, the consumer keeps polling, and nothing is attempted
    calls_when_open = sum(support.CALLS.values())
    consumer.poll_once()
    consumer.poll_once()
    assert consumer._paused and sum(support.CALLS.values()) == calls_when_open
    support.poll_until(consumer, lambda: support.effects(events) == 30, timeout=60)
    assert support.dead_letters(0, timeout=1) == []
    assert not PendingRetry.objects.exists()
    # the breaker stopped the burn: far fewer failed calls than 30 events x 3 attempts
    assert calls_when_open < 30
