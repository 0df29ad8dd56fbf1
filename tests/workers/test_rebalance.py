"""Partition moves: each member logs what it was assigned and what was revoked from it (the scale-out bench reads
these lines to measure rebalance pauses), and a member that joins a paused stage hands out nothing, not even in
the poll that joined the group."""
import logging
import time

import pytest

from tests.workers import support
from workers import line
from workers.metrics import PARTITIONS_MOVED

pytestmark = pytest.mark.django_db(transaction=True)


def _moves(caplog, event: str) -> dict[str, set[str]]:
    """member -> the partitions it logged as `event`."""
    out: dict[str, set[str]] = {}
    for record in caplog.records:
        if record.name == "workers.rebalance" and record.rebalance_event == event:
            assert record.stage == "test" and record.at > 0
            out.setdefault(record.member, set()).update(record.partitions)
    return out


def test_each_member_logs_the_partitions_it_gains_and_gives_up(make_consumer_for, caplog, topic_prefix):
    caplog.set_level(logging.INFO, logger="workers.rebalance")
    everything = {f"{topic_prefix}purchase-created[0]", f"{topic_prefix}purchase-created[1]"}
    assigned_before = PARTITIONS_MOVED.labels("test", "assigned")._value.get()
    first = make_consumer_for()
    support.poll_until(first, lambda: len(first.consumer.assignment()) == 2)
    assert _moves(caplog, "assigned") == {first.consumer.memberid(): everything}

    second = make_consumer_for()
    both = support.Members(first, second)
    support.poll_until(both, lambda: second.consumer.assignment() and len(first.consumer.assignment()) == 1)
    moved = {f"{tp.topic}[{tp.partition}]" for tp in second.consumer.assignment()}
    assert _moves(caplog, "revoked") == {first.consumer.memberid(): moved}  # only the moved one: cooperative
    assert _moves(caplog, "assigned")[second.consumer.memberid()] == moved

    leaving = second.consumer.memberid()
    second.close()
    support.poll_until(first, lambda: len(first.consumer.assignment()) == 2)
    assert _moves(caplog, "revoked")[leaving] == moved
    assert _moves(caplog, "assigned")[first.consumer.memberid()] == everything
    assert PARTITIONS_MOVED.labels("test", "assigned")._value.get() - assigned_before == 4


def test_a_member_that_joins_a_paused_stage_hands_out_nothing(make_consumer_for, group_id):
    line.pause("test", reason="incident 7", actor="cli:ops")
    events = [support.purchase_created(i) for i in range(300, 306)]
    support.produce_events(events)
    joining = make_consumer_for(batch_wait=1.0)  # a long first poll: the assignment arrives inside it
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        joining.poll_once()
    assert joining.consumer.assignment() and support.effects(events) == 0
    assert support.committed_offset(group_id, "purchase-created") < 0  # nothing consumed, nothing committed

    line.resume("test", actor="cli:ops")
    support.poll_until(joining, lambda: support.effects(events) == 6, timeout=15)
