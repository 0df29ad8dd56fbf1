"""A polled batch in two transactions side by side (workers.lanes): whole partitions per lane, each event's
effect exactly once, offsets committed only when every lane is done, and a lane that fails rewinds the batch."""
import threading

import pytest
from django.db import OperationalError

from tests.workers import support
from workers.dead_letters import SourceMessage
from workers.lanes import split
from workers.processing import Processor


def _source(topic: str, partition: int, offset: int) -> SourceMessage:
    return SourceMessage(topic=topic, partition=partition, offset=offset, key=b"k", value=b"{}", headers=[])


def test_split_keeps_partitions_whole_and_in_order_and_one_partition_number_in_one_lane():
    batch = [_source("a", p, o) for o, p in enumerate([0, 0, 1, 2, 1, 0, 2, 2, 3])] + [_source("b", 1, 0)]

    groups = split(batch, 2)

    assert len(groups) == 2
    where = lambda s: (s.topic, s.partition, s.offset)  # noqa: E731
    assert sorted(map(where, (s for g in groups for s in g))) == sorted(map(where, batch))  # none lost or twice
    for group in groups:
        for partition in {s.partition for s in group}:
            mine = [s for s in batch if s.partition == partition]
            assert [s for s in group if s.partition == partition] == mine  # whole, in consumption order
            assert all(s not in other for other in groups if other is not group for s in mine)
    assert abs(len(groups[0]) - len(groups[1])) <= 2


def test_one_partition_or_one_lane_is_not_split():
    batch = [_source("a", 0, o) for o in range(5)]
    assert split(batch, 2) == [batch]
    assert split([*batch, _source("a", 1, 0)], 1) == [[*batch, _source("a", 1, 0)]]


def _two_partitions(n: int) -> tuple[list, list]:
    first = [support.purchase_created(i) for i in range(1, n + 1)]
    second = [support.purchase_created(i) for i in range(n + 1, 2 * n + 1)]
    support.produce_events(first, partition=0)
    support.produce_events(second, partition=1)
    return first, second


@pytest.mark.django_db(transaction=True)
def test_two_lanes_handle_each_event_once_in_partition_order(make_consumer_for, group_id, settings):
    settings.WORKER_LANES_BUSY_LIMIT = 1  # split whatever else the machine runs (workers.headroom)
    threads: dict = {}
    handler = support.scripted_handler

    def recording(event):
        threads[event.event_id] = threading.current_thread() is threading.main_thread()
        handler(event)

    first, second = _two_partitions(30)
    consumer = make_consumer_for(support.make_stage(group_id, handler=recording), lanes=2, batch_wait=1.0)
    support.poll_until(consumer, lambda: support.effects(first + second) == 60)

    assert set(threads.values()) == {True, False}  # the batch was split: the loop's thread and a lane thread
    assert all(support.CALLS[e.event_id] == 1 for e in first + second)
    assert support.effect_order(first) == [e.event_id for e in first]
    assert support.effect_order(second) == [e.event_id for e in second]
    support.poll_until(consumer, lambda: (support.committed_offset(group_id, "purchase-created", 0),
                                          support.committed_offset(group_id, "purchase-created", 1)) == (30, 30))


@pytest.mark.django_db(transaction=True)
def test_a_failed_lane_rewinds_the_batch_and_nothing_is_done_twice(make_consumer_for, group_id, monkeypatch,
                                                                   settings):
    """The fault is injected (the database refusing one lane's transaction): it cannot be made on cue for one
    thread of the two."""
    settings.WORKER_LANES_BUSY_LIMIT = 1
    real = Processor.process
    failed = []

    def process(self, sources):
        if threading.current_thread() is not threading.main_thread() and not failed:
            failed.append(len(sources))
            raise OperationalError("injected: the lane's connection was lost")
        return real(self, sources)

    monkeypatch.setattr(Processor, "process", process)
    first, second = _two_partitions(20)
    consumer = make_consumer_for(lanes=2, batch_wait=1.0)
    support.poll_until(consumer, lambda: support.effects(first + second) == 40)

    assert failed  # one lane did fail, and the other lane's work of that batch was not repeated
    assert all(support.CALLS[e.event_id] == 1 for e in first + second)
    support.poll_until(consumer, lambda: (support.committed_offset(group_id, "purchase-created", 0),
                                          support.committed_offset(group_id, "purchase-created", 1)) == (20, 20))
