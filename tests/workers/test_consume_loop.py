"""At-least-once delivery with exactly-once effects, through the real broker and PostgreSQL."""
import pytest

from tests.workers import support
from workers.models import OutboxEvent, ProcessedEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_batch_is_processed_committed_and_its_events_emitted(make_consumer_for, group_id):
    events = [support.purchase_created(i) for i in range(1, 21)]
    support.produce_events(events)
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.effects(events) == 20)

    assert ProcessedEvent.objects.filter(consumer=group_id).count() == 20
    # committed without waiting for the coordinator (workers.offsets): its answer comes with a later poll
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 20, timeout=10)
    # each handler emitted one event, published after commit and marked sent on the delivery report
    emitted = support.read_topic("trainer-allocated", 20)
    assert len(emitted) == 20
    support.poll_until(consumer, lambda: not OutboxEvent.objects.unsent().exists())


def test_redelivered_events_are_skipped_by_the_same_group_but_not_by_another(make_consumer_for, group_id):
    events = [support.purchase_created(i) for i in range(1, 6)]
    support.produce_events(events)
    first = make_consumer_for()
    support.poll_until(first, lambda: support.effects(events) == 5)
    first.close()

    # the same events arrive again (a producer retry, a replay): the group skips them
    support.produce_events(events)
    again = make_consumer_for()
    support.poll_until(again, lambda: support.committed_offset(group_id, "purchase-created") == 10)
    assert sum(support.CALLS.values()) == 5
    assert OutboxEvent.objects.count() == 5

    # another group has its own processed-event records and handles every event once
    other_group = group_id + "-other"
    other = make_consumer_for(
        support.make_stage(other_group, handler=lambda e: support.CALLS.update([("other", e.event_id)])))
    support.poll_until(other, lambda: support.committed_offset(other_group, "purchase-created") == 10)
    assert ProcessedEvent.objects.filter(consumer=other_group).count() == 5


def test_crash_after_db_commit_before_offset_commit_loses_and_duplicates_nothing(make_consumer_for, group_id):
    events = [support.purchase_created(i) for i in range(1, 11)]
    support.produce_events(events)
    crashed = make_consumer_for()
    # the process dies after the database commit of the batch, before its offsets were committed
    crashed._commit = lambda sources: None
    support.poll_until(crashed, lambda: support.effects(events) == 10)
    assert support.committed_offset(group_id, "purchase-created") < 0  # nothing committed
    crashed.close()

    restarted = make_consumer_for()
    support.poll_until(restarted, lambda: support.committed_offset(group_id, "purchase-created") == 10)
    assert support.effects(events) == 10
    assert ProcessedEvent.objects.filter(consumer=group_id).count() == 10
    assert OutboxEvent.objects.count() == 10


def test_a_bad_event_in_a_batch_never_repeats_its_neighbours_effects(make_consumer_for, group_id):
    events = [support.purchase_created(i) for i in range(1, 11)]
    support.SCRIPT[5] = ["bug", "bug"]  # event 5 fails in the batch and alone, then succeeds on its retry
    support.produce_events(events)
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.effects(events) == 10)
    good = [e for e in events if e.payload.student_id != 5]
    bad = next(e for e in events if e.payload.student_id == 5)
    # the neighbours' effects committed exactly once (their batch attempt rolled back, then one each)
    assert support.effects(good) == 9
    assert OutboxEvent.objects.count() == 10
    assert support.CALLS[bad.event_id] == 3  # batch attempt, its own attempt, the retry
    # each neighbour ran in the rolled-back batch (if before event 5), then alone: its effect committed once
    assert all(1 <= support.CALLS[e.event_id] <= 2 for e in good)
