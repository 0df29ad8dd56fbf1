"""A polled batch in two transactions side by side (workers.lanes): one key's events in one lane and in order,
each event's effect exactly once, offsets committed only when every lane is done, and a lane that fails rewinds
the batch."""
import threading

import pytest
from django.db import OperationalError

from tests.workers import support
from workers.dead_letters import SourceMessage
from workers.lanes import split
from workers.processing import Processor


def _source(topic: str, partition: int, offset: int, key: bytes | None) -> SourceMessage:
    return SourceMessage(topic=topic, partition=partition, offset=offset, key=key, value=b"{}", headers=[])


def test_split_keeps_each_keys_messages_together_and_in_order_even_from_one_partition():
    """One partition's batch is split too (librdkafka hands a consumer whole fetched chunks of one partition), and
    one key's messages of every topic of the stage go to the same lane."""
    batch = [_source("a", 0, o, f"student-{o % 40}".encode()) for o in range(400)]
    batch += [_source("b", 3, o, f"student-{o % 40}".encode()) for o in range(40)]

    groups = split(batch, 2)

    assert len(groups) == 2 and all(len(g) > 40 for g in groups)  # 40 keys: both lanes get a share
    where = lambda s: (s.topic, s.partition, s.offset)  # noqa: E731
    assert sorted(map(where, (s for g in groups for s in g))) == sorted(map(where, batch))  # none lost or twice
    for group in groups:
        assert group == [s for s in batch if s in group]  # consumption order
        for key in {s.key for s in group}:
            assert [s for s in group if s.key == key] == [s for s in batch if s.key == key]  # the key whole


def test_messages_without_a_key_go_by_partition():
    batch = [_source("a", p, o, None) for o in range(5) for p in (0, 1, 2, 3)]
    for group in split(batch, 2):
        for partition in {s.partition for s in group}:
            assert [s for s in group if s.partition == partition] == [s for s in batch if s.partition == partition]


def test_one_lane_or_one_key_is_not_split():
    batch = [_source("a", 0, o, b"one-student") for o in range(5)]
    assert split(batch, 2) == [batch]
    mixed = [*batch, _source("a", 1, 0, b"another")]
    assert split(mixed, 1) == [mixed]


def _two_partitions(n: int) -> tuple[list, list]:
    """n events in each of two partitions, of five students each, the students' events interleaved."""
    first = [support.purchase_created(1 + i % 5) for i in range(n)]
    second = [support.purchase_created(6 + i % 5) for i in range(n)]
    support.produce_events(first, partition=0)
    support.produce_events(second, partition=1)
    return first, second


@pytest.mark.django_db(transaction=True)
def test_two_lanes_handle_each_event_once_in_each_students_order(make_consumer_for, group_id, settings):
    settings.WORKER_LANES_BUSY_LIMIT = 1  # split whatever else the machine runs (workers.headroom)
    settings.WORKER_LANE_MIN_EVENTS = 1  # and however small the batch
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
    for student in range(1, 11):
        theirs = [e for e in first + second if e.key == student]
        assert len(theirs) == 6 and support.effect_order(theirs) == [e.event_id for e in theirs]
    support.poll_until(consumer, lambda: (support.committed_offset(group_id, "purchase-created", 0),
                                          support.committed_offset(group_id, "purchase-created", 1)) == (30, 30))


@pytest.mark.django_db(transaction=True)
def test_a_failed_lane_rewinds_the_batch_and_nothing_is_done_twice(make_consumer_for, group_id, monkeypatch,
                                                                   settings):
    """The fault is injected (the database refusing one lane's transaction): it cannot be made on cue for one
    thread of the two."""
    settings.WORKER_LANES_BUSY_LIMIT, settings.WORKER_LANE_MIN_EVENTS = 1, 1
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
