"""An offset commit that fails is made again: the lag of a partition that gets no further message still clears.

The failure is injected (a commit refused with ILLEGAL_GENERATION, as during a rebalance): the broker cannot be
made to refuse one chosen commit on cue."""
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tests.workers import support

pytestmark = pytest.mark.django_db(transaction=True)


class RefusedCommits:
    """The real consumer, except that its commits fail while `refusing` is set."""

    def __init__(self, consumer) -> None:
        self._consumer, self.refusing, self.refused = consumer, True, 0

    def commit(self, *args, **kwargs):
        if self.refusing:
            self.refused += 1
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
        return self._consumer.commit(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._consumer, name)


def test_a_failed_commit_is_retried_without_any_further_message(make_consumer_for, group_id):
    events = [support.purchase_created(i) for i in range(1, 4)]
    support.produce_events(events)
    consumer = make_consumer_for()
    flaky = consumer.consumer = RefusedCommits(consumer.consumer)
    support.poll_until(consumer, lambda: support.effects(events) == 3)
    assert flaky.refused >= 1 and support.committed_offset(group_id, "purchase-created") < 3
    flaky.refusing = False  # the rebalance is over; no new message arrives
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 3, timeout=10)


def test_what_is_done_is_committed_when_the_partitions_are_revoked(make_consumer_for, group_id):
    events = [support.purchase_created(i) for i in range(5, 8)]
    support.produce_events(events)
    consumer = make_consumer_for()
    flaky = consumer.consumer = RefusedCommits(consumer.consumer)
    support.poll_until(consumer, lambda: support.effects(events) == 3)
    flaky.refusing = False
    consumer.close()  # leaving the group revokes every partition, with no chores tick in between
    assert support.committed_offset(group_id, "purchase-created") == 3


class RefusedAnswers(RefusedCommits):
    """The real consumer, except that the coordinator's answer to each asynchronous commit is a refusal while
    `refusing` is set (the answer librdkafka hands to the consumer's `on_commit` during a later poll)."""

    def __init__(self, consumer, stage_consumer) -> None:
        super().__init__(consumer)
        self._answer = stage_consumer.offsets.on_committed

    def commit(self, *args, offsets, asynchronous=True, **kwargs):
        if self.refusing and asynchronous:
            self.refused += 1
            self._answer(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), offsets)
            return None
        return self._consumer.commit(*args, offsets=offsets, asynchronous=asynchronous, **kwargs)


def test_a_commit_the_coordinator_refuses_later_is_made_again(make_consumer_for, group_id):
    events = [support.purchase_created(i) for i in range(9, 12)]
    support.produce_events(events)
    consumer = make_consumer_for()
    flaky = consumer.consumer = RefusedAnswers(consumer.consumer, consumer)
    support.poll_until(consumer, lambda: support.effects(events) == 3)
    assert flaky.refused >= 1 and support.committed_offset(group_id, "purchase-created") < 3
    flaky.refusing = False
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 3, timeout=10)


class RecordedCommits:
    """Records what is committed; stands for a consumer whose coordinator answers out of order, which a real
    broker cannot be made to do on cue."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[str, int, int]]] = []

    def commit(self, *, offsets, asynchronous):
        self.sent.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def assignment(self):
        return [TopicPartition("t", 0)]


def test_a_late_refusal_of_an_older_commit_does_not_move_the_offset_back():
    from workers.offsets import OffsetCommits

    recorded = RecordedCommits()
    offsets = OffsetCommits("purchases", lambda: recorded, on_success=lambda: None)
    offsets.batch_done({("t", 0): 5})
    offsets.batch_done({("t", 0): 9})
    offsets.on_committed(None, [TopicPartition("t", 0, 9)])  # the newer commit is confirmed first
    offsets.on_committed(KafkaError(KafkaError.REQUEST_TIMED_OUT), [TopicPartition("t", 0, 5)])

    offsets.again()
    assert recorded.sent == [[("t", 0, 5)], [("t", 0, 9)]]  # nothing sent again: 9 stands

    offsets.on_committed(KafkaError(KafkaError.REQUEST_TIMED_OUT), [TopicPartition("t", 0, 12)])
    offsets.again()
    assert recorded.sent[-1] == [("t", 0, 12)]  # a refusal of the newest offset is sent again
