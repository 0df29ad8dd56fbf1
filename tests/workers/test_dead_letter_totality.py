"""Dead-lettering is total: a message whose copy cannot go to the dead-letter topic as it is gets there cut,
with what was cut described, and the events behind it keep flowing (workers.oversize)."""
import hashlib

import pytest

from tests.workers import support
from tests.workers.support import set_topic_config
from workers import oversize
from workers.kafka import DEAD_LETTER_TOPIC, make_producer, topic

pytestmark = pytest.mark.django_db(transaction=True)


def _produce_raw(value: bytes | None, headers=None, key: bytes = b"bad", **config) -> None:
    producer = make_producer(**config)
    producer.produce(topic("purchase-created"), key=key, value=value, headers=headers or [], partition=0)
    assert producer.flush(20) == 0


def _run(make_consumer_for, group_id, bad) -> tuple[list, dict]:
    """Produce good, bad (a callable producing it), good; consume to the end. Returns (good events, the DLQ copy's
    headers and message)."""
    first, last = support.purchase_created(1), support.purchase_created(2)
    support.produce_events([first])
    bad()
    support.produce_events([last])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 3, timeout=60)
    assert support.effects([first, last]) == 2
    [message] = support.dead_letters(1)
    return message, dict(message.headers())


def _mark(raw: bytes) -> bytes:
    return f"{len(raw)} {hashlib.sha256(raw).hexdigest()}".encode()


def test_a_message_just_under_the_broker_limit_is_dead_lettered_with_its_value_cut(make_consumer_for, group_id):
    value = b'{"pad": "' + b"x" * 1_040_000 + b'"}'  # over the event limit; its copy plus the context would not fit
    message, headers = _run(make_consumer_for, group_id, lambda: _produce_raw(value))
    assert headers["dlq.reason"] == b"invalid"
    assert headers["dlq.cut.value"] == _mark(value)
    assert value.startswith(message.value()) and len(message.value()) < value.__len__()
    assert len(message.value()) > 800_000  # cut to what fits, not thrown away


def test_a_compressed_value_that_expands_past_the_limit_is_dead_lettered_cut(make_consumer_for, group_id):
    value = b"\x00" * 5_000_000  # 5 MB on the consumer's side, a few KB on the wire
    message, headers = _run(make_consumer_for, group_id, lambda: _produce_raw(
        value, **{"compression.type": "gzip", "message.max.bytes": 10_000_000}))
    assert headers["dlq.cut.value"] == _mark(value)
    assert len(message.value()) <= 900_000


def test_a_valid_event_with_megabytes_of_headers_is_dead_lettered_without_them(make_consumer_for, group_id):
    event = support.purchase_created(3)
    heavy = [(f"x-{i}", bytes([65 + i % 26]) * 40_000) for i in range(50)]  # 2 MB of headers
    message, headers = _run(make_consumer_for, group_id, lambda: _produce_raw(
        event.to_json(), heavy, key=b"3", **{"compression.type": "lz4", "message.max.bytes": 10_000_000}))
    assert "headers, over the limit" in headers["dlq.error_message"].decode()
    assert headers["dlq.cut.headers"] == (f"50 {oversize.headers_size(heavy)} "
                                          f"{oversize.headers_digest(heavy)}").encode()
    assert not any(name.startswith("x-") for name, _ in message.headers())
    assert message.value() == event.to_json()  # the value itself fits and stays whole
    assert support.effects([event]) == 0


def test_too_many_small_headers_make_a_message_invalid(make_consumer_for, group_id):
    event = support.purchase_created(4)
    many = [(f"h{i}", b"1") for i in range(200)]
    message, headers = _run(make_consumer_for, group_id, lambda: _produce_raw(event.to_json(), many, key=b"4"))
    assert "200 headers" in headers["dlq.error_message"].decode()
    assert "dlq.cut.headers" not in headers  # they fit in the copy: kept for the operator
    assert support.effects([event]) == 0


def test_a_copy_the_broker_refuses_for_its_size_goes_as_context_only(make_consumer_for, group_id):
    set_topic_config(topic(DEAD_LETTER_TOPIC), "max.message.bytes", "50000")
    value = b"not json " * 20_000  # 180 KB: under our limits, over this dead-letter topic's
    message, headers = _run(make_consumer_for, group_id, lambda: _produce_raw(value))
    assert message.value() is None and message.key() is None
    assert headers["dlq.cut.value"] == _mark(value)
    assert headers["dlq.reason"] == b"invalid" and b"not JSON" in headers["dlq.error_message"]


def test_fit_keeps_what_fits_and_describes_what_it_cut():
    context = [("dlq.stage", b"test")]
    assert oversize.fit(b"k", b"v" * 100, [("a", b"1")], context, budget=10_000) == (
        b"k", b"v" * 100, [("a", b"1"), *context])
    key, value, headers = oversize.fit(b"k", b"v" * 10_000, [("a", b"1")], context, budget=5_000)
    assert key == b"k" and 3_000 < len(value) < 5_000
    assert [name for name, _ in headers] == ["a", "dlq.stage", "dlq.cut.value"]  # a small header stays
    heavy = [("big", b"h" * 20_000), ("a", b"1")]
    key, value, headers = oversize.fit(b"k", b"v" * 100, heavy, context, budget=5_000)
    assert value == b"v" * 100 and [name for name, _ in headers] == ["dlq.stage", "dlq.cut.headers"]
    key, value, headers = oversize.fit(b"k" * 10_000, None, [], context, budget=2_000)
    assert len(key) < 2_000 and dict(headers)["dlq.cut.key"] == _mark(b"k" * 10_000)
