"""Malformed messages go straight to the dead-letter queue with their reason; the consumer keeps going."""
import json

import pytest

from tests.workers import support
from workers.models import PendingRetry
from workers.stage import DeadLetterPolicy

pytestmark = pytest.mark.django_db(transaction=True)


def _envelope(**changes):
    good = json.loads(support.purchase_created(9).to_json())
    good.update(changes)
    return json.dumps(good).encode()


BAD = {
    "not json": (b"{not json", "not JSON"),
    "not utf-8": (b"\xff\xfe\x00garbage", "not UTF-8"),
    "json array": (b"[1, 2]", "must be a JSON object"),
    "tombstone": (None, "no value"),
    "missing event_id": (_envelope(event_id=None), "event_id"),
    "unknown type": (_envelope(event_type="PURCHASE_EXPLODED"), "unknown event type"),
    "future version": (_envelope(version=7), "unsupported version 7"),
    "mistyped payload": (_envelope(payload={"purchase_id": "1", "payment_id": 1, "student_id": 1, "course_id": 1}),
                         "purchase_id"),
    "extra envelope field": (_envelope(surprise=True), "surprise"),
    "naive timestamp": (_envelope(occurred_at="2026-01-01T00:00:00"), "time zone"),
    "oversized": (b'{"pad": "' + b"x" * 300_000 + b'"}', "over the"),
}


def test_each_malformed_message_is_dead_lettered_with_its_reason_and_good_ones_still_flow(make_consumer_for, group_id):
    good_before, good_after = support.purchase_created(1), support.purchase_created(2)
    values = [(b"1", good_before.to_json())]
    values += [(f"bad-{name}".encode(), value) for name, (value, _) in BAD.items()]
    values += [(b"2", good_after.to_json())]
    support.produce("purchase-created", values)
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == len(values))

    assert support.effects([good_before, good_after]) == 2
    assert not PendingRetry.objects.exists()  # never retried
    by_key = {m.key().decode(): m for m in support.dead_letters(len(BAD))}
    assert len(by_key) == len(BAD)
    for name, (value, reason) in BAD.items():
        message = by_key[f"bad-{name}"]
        headers = dict(message.headers())
        assert reason in headers["dlq.error_message"].decode(), name
        assert headers["dlq.reason"] == b"invalid"
        assert headers["dlq.error_class"] == b"workers.envelope.InvalidEvent"
        assert message.value() == value  # the original bytes, unchanged


def test_dead_letter_carries_full_context(make_consumer_for, group_id):
    event = support.purchase_created(11)
    support.SCRIPT[11] = ["permanent"]
    support.produce("purchase-created", [(b"11", event.to_json())])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 1)
    [message] = support.dead_letters(1)
    headers = dict(message.headers())
    assert message.key() == b"11"
    assert headers["dlq.original_topic"].decode().endswith("purchase-created")
    assert headers["dlq.original_partition"] == b"0"
    assert headers["dlq.original_offset"] == b"0"
    assert headers["dlq.consumer_group"] == group_id.encode()
    assert headers["dlq.stage"] == b"test"
    assert headers["dlq.event_id"] == str(event.event_id).encode()
    assert headers["dlq.correlation_id"] == str(event.correlation_id).encode()
    assert headers["dlq.partition_key"] == b"11"
    assert b"PermanentError: this can never work" in headers["dlq.traceback"]
    assert headers["dlq.first_failed_at"] and headers["dlq.last_failed_at"]


def test_a_stage_that_never_dead_letters_drops_bad_input_and_goes_on(make_consumer_for, group_id):
    stage = support.make_stage(group_id, dead_letters=DeadLetterPolicy.LOG_AND_COUNT)
    good = support.purchase_created(1)
    support.produce("purchase-created", [(b"x", b"garbage"), (b"1", good.to_json())])
    consumer = make_consumer_for(stage)
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 2)
    assert support.effects([good]) == 1
    assert support.dead_letters(0, timeout=1) == []


def test_dead_letters_are_durable_before_the_offset_is_committed(make_consumer_for, group_id, settings):
    support.produce("purchase-created", [(b"x", b"garbage")])
    consumer = make_consumer_for()
    prefix = settings.KAFKA_TOPIC_PREFIX
    # the broker cannot take the dead letter (an invalid dead-letter topic name): the offset stays uncommitted
    settings.KAFKA_TOPIC_PREFIX = prefix + "x" * 250
    for _ in range(3):
        consumer.poll_once()
    settings.KAFKA_TOPIC_PREFIX = prefix
    assert support.committed_offset(group_id, "purchase-created") < 0
    # once the dead letter can be written, the rewound message is dead-lettered and committed
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 1)
    assert [m.value() for m in support.dead_letters(1)] == [b"garbage"]
