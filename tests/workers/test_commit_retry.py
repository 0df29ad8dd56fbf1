"""An offset commit that fails is made again: the lag of a partition that gets no further message still clears.

The failure is injected (a commit refused with ILLEGAL_GENERATION, as during a rebalance): the broker cannot be
made to refuse one chosen commit on cue."""
import pytest
from confluent_kafka import KafkaError, KafkaException

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
