"""Key order through failures (workers.ordering): a key's events run in order through retries, dead letters,
rebalances and restarts, and other keys never wait. On the real broker and PostgreSQL."""
import datetime
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from enrollment.models import Student
from tests.workers import support
from workers import dead_letter_store
from workers.models import DeadLetter, PendingRetry, ProcessedEvent

pytestmark = pytest.mark.django_db(transaction=True)
PAST = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture
def slow_retries(settings):
    """Retries far in the future: a test moves time on for a row by making it due."""
    settings.RETRY_BASE_SECONDS, settings.RETRY_MAX_SECONDS = 60, 600


def make_due(event) -> None:
    assert PendingRetry.objects.filter(event_id=event.event_id).update(next_attempt_at=PAST) == 1


def parked(*events) -> bool:
    """Each event waits in PendingRetry with no attempt spent."""
    rows = PendingRetry.objects.filter(event_id__in=[e.event_id for e in events], attempts=0, dead_lettered=False)
    return rows.count() == len(events)


def test_later_events_of_a_key_wait_behind_its_retry_in_order_while_other_keys_run(
        make_consumer_for, group_id, slow_retries):
    first, second, third = (support.purchase_created(1) for _ in range(3))
    others = [support.purchase_created(2), support.purchase_created(3)]
    support.SCRIPT[1] = ["transient", "transient"]
    support.produce_events([first])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: PendingRetry.objects.filter(event_id=first.event_id).exists())
    support.produce_events([second, third, *others])  # one partition: behind the retry, in offset order

    support.poll_until(consumer, lambda: support.effects(others) == 2)  # other keys at once
    assert parked(second, third)
    assert support.CALLS[second.event_id] == support.CALLS[third.event_id] == 0
    assert support.committed_offset(group_id, "purchase-created") == 5  # the partition moved on

    make_due(first)  # its second attempt fails again; the events behind it still wait
    support.poll_until(consumer, lambda: PendingRetry.objects.get(event_id=first.event_id).attempts == 2)
    assert support.effects([second, third]) == 0
    make_due(first)
    support.poll_until(consumer, lambda: support.effects([first, second, third]) == 3)
    assert support.effect_order([first, second, third]) == [first.event_id, second.event_id, third.event_id]
    assert (support.CALLS[first.event_id], support.CALLS[second.event_id], support.CALLS[third.event_id]) == (3, 1, 1)
    assert not PendingRetry.objects.exists()


def test_the_order_holds_across_rebalances_with_two_consumers_in_the_group(
        make_consumer_for, group_id, slow_retries):
    first, second, third, fourth = (support.purchase_created(11) for _ in range(4))
    others = [support.purchase_created(n) for n in (12, 13, 14)]
    support.SCRIPT[11] = ["transient"]
    support.produce_events([first], partition=0)
    alone = make_consumer_for()
    support.poll_until(alone, lambda: PendingRetry.objects.filter(event_id=first.event_id).exists())

    joined = make_consumer_for()  # a second member: the partitions are shared out again
    both = support.Members(alone, joined)
    support.poll_until(both, lambda: all(c.consumer.assignment() for c in both.consumers))
    support.produce_events([second, third], partition=0)
    support.produce_events(others[:1], partition=0)
    support.produce_events(others[1:], partition=1)
    support.poll_until(both, lambda: support.effects(others) == 3)
    assert parked(second, third)

    alone.close()  # another rebalance: the survivor takes every partition, and the rows are shared anyway
    support.produce_events([fourth], partition=0)
    support.poll_until(joined, lambda: parked(fourth))
    make_due(first)
    support.poll_until(joined, lambda: support.effects([first, second, third, fourth]) == 4)
    assert support.effect_order([first, second, third, fourth]) == [e.event_id for e in (first, second, third, fourth)]
    assert not PendingRetry.objects.exists()


def _store_dead_letters(expected: int) -> list[DeadLetter]:
    """What the dead-letter persister does: the DLQ's messages become rows for the admin."""
    dead_letter_store.persist(support.dead_letters(expected))
    return list(DeadLetter.objects.order_by("id"))


def test_a_dead_letter_holds_its_key_until_it_is_discarded_in_the_admin(make_consumer_for, admin_client):
    first, second = support.purchase_created(21), support.purchase_created(21)
    other = support.purchase_created(22)
    support.SCRIPT[21] = ["permanent"]
    support.produce_events([first])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: PendingRetry.objects.filter(event_id=first.event_id,
                                                                     dead_lettered=True).exists())
    [letter] = _store_dead_letters(1)
    support.produce_events([second, other])
    support.poll_until(consumer, lambda: support.effects([other]) == 1)
    for _ in range(10):
        consumer.poll_once()
    assert support.effects([second]) == 0 and parked(second)  # not even tried: it waits, attempts unspent

    trace = admin_client.get(reverse("admin:workers_deadletter_trace", args=[second.correlation_id]))
    assert f"Waiting behind dead letter #{letter.pk}" in trace.content.decode()
    changelist = admin_client.get(reverse("admin:workers_deadletter_changelist"))
    assert [row.waiting_behind for row in changelist.context["cl"].result_list] == [1]

    admin_client.post(reverse("admin:workers_deadletter_changelist"), {
        "action": "discard_selected", "_selected_action": [letter.pk], "post": "yes", "reason": "refunded"})
    support.poll_until(consumer, lambda: support.effects([second]) == 1)
    assert DeadLetter.objects.get().status == DeadLetter.Status.DISCARDED
    assert support.effects([first]) == 0 and not PendingRetry.objects.exists()
    changelist = admin_client.get(reverse("admin:workers_deadletter_changelist"))
    assert [row.waiting_behind for row in changelist.context["cl"].result_list] == [0]


def test_a_replayed_dead_letter_runs_before_the_events_that_waited_behind_it(make_consumer_for, admin_client):
    first, second, third = (support.purchase_created(31) for _ in range(3))
    support.SCRIPT[31] = ["permanent"]  # then the handler is fixed: the replay succeeds
    support.produce_events([first])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: PendingRetry.objects.filter(dead_lettered=True).exists())
    [letter] = _store_dead_letters(1)
    support.produce_events([second, third])
    support.poll_until(consumer, lambda: parked(second, third))

    admin_client.post(reverse("admin:workers_deadletter_changelist"),
                      {"action": "replay_selected", "_selected_action": [letter.pk]})
    support.poll_until(consumer, lambda: support.effects([first, second, third]) == 3)
    assert support.effect_order([first, second, third]) == [first.event_id, second.event_id, third.event_id]
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RESOLVED
    assert not PendingRetry.objects.exists()
    assert ProcessedEvent.objects.filter(event_id__in=[first.event_id, second.event_id, third.event_id]).count() == 3


def _worker(group_id: str, log_path) -> subprocess.Popen:
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test", "KAFKA_TOPIC_PREFIX": settings.KAFKA_TOPIC_PREFIX,
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    return subprocess.Popen([sys.executable, "-m", "tests.workers.ordered_worker", group_id], env=env,
                            cwd=settings.BASE_DIR, stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def test_a_sigkill_while_events_are_parked_loses_nothing_and_keeps_the_order(topic_prefix, group_id, tmp_path):
    hold = Student.objects.create(name="script", email="hold-41@script.test")  # key 41 fails until it goes
    first, second, third, fourth = (support.purchase_created(41) for _ in range(4))
    other = support.purchase_created(42)
    worker = _worker(group_id, tmp_path / "worker.log")
    try:
        support.produce_events([first])
        _wait(lambda: PendingRetry.objects.filter(event_id=first.event_id, attempts__gte=1).exists())
        support.produce_events([second, third, other])
        _wait(lambda: support.effects([other]) == 1 and parked(second, third))
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        support.produce_events([fourth])  # arrives while no consumer runs
        hold.delete()
        worker = _worker(group_id, tmp_path / "worker.log")
        _wait(lambda: support.effects([first, second, third, fourth]) == 4)
    finally:
        worker.terminate()
        worker.wait(30)
    assert support.effect_order([first, second, third, fourth]) == [e.event_id for e in (first, second, third, fourth)]
    assert ProcessedEvent.objects.filter(consumer=group_id).count() == 5  # each once, the other key's too
    assert not PendingRetry.objects.exists()


def test_a_replay_revives_only_the_group_whose_letter_was_replayed(make_consumer_for, group_id, admin_client):
    event = support.purchase_created(51)
    support.SCRIPT[51] = ["permanent", "permanent"]  # once in each group
    ours, theirs = make_consumer_for(), make_consumer_for(support.make_stage(f"{group_id}-b", name="test-b"))
    both = support.Members(ours, theirs)
    support.produce_events([event])
    support.poll_until(both, lambda: PendingRetry.objects.filter(dead_lettered=True).count() == 2)
    letters = {letter.consumer_group: letter for letter in _store_dead_letters(2)}

    admin_client.post(reverse("admin:workers_deadletter_changelist"),
                      {"action": "replay_selected", "_selected_action": [letters[group_id].pk]})
    support.poll_until(both, lambda: support.effects([event]) == 1)
    for _ in range(5):
        both.poll_once()
    assert support.CALLS[event.event_id] == 3  # two failures, one success: the other group did not run it again
    assert [(r.consumer, r.dead_lettered) for r in PendingRetry.objects.all()] == [(f"{group_id}-b", True)]
    statuses = dict(DeadLetter.objects.values_list("consumer_group", "status"))
    assert statuses == {group_id: DeadLetter.Status.RESOLVED, f"{group_id}-b": DeadLetter.Status.NEW}
