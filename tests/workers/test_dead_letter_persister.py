"""The dead-letter persister never stalls: a DLQ message whose dlq.* headers cannot be stored as they are is
stored with what can be, flagged malformed, and the messages behind it are stored too. Replays of letters that
can never succeed (invalid, cut, malformed) are refused with the reason."""
import time

import pytest

from tests.factories import DeadLetterFactory
from tests.workers import support
from workers import dead_letter_actions
from workers.dead_letter_store import PERSISTER_GROUP, persist_batch
from workers.kafka import DEAD_LETTER_TOPIC, make_consumer, make_producer, topic
from workers.models import DeadLetter

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_CONTEXT = {"stage": "test", "consumer_group": "g", "reason": "permanent", "error_class": "E", "attempts": "1",
                "original_topic": "t", "original_partition": "0", "first_failed_at": "2026-01-05T10:00:00+00:00",
                "last_failed_at": "2026-01-05T10:00:01+00:00"}
HOSTILE = {
    "impossible date": ({"last_failed_at": "2026-02-30T10:00:00+00:00"}, "last_failed_at: not a date"),
    "over-long stage": ({"stage": "s" * 500}, "stage: 500 characters, over 64; cut"),
    "attempts out of range": ({"attempts": "99999999999"}, "attempts: 99999999999 is out of range"),
    "partition not a number": ({"original_partition": "zero"}, "original_partition: not a number"),
    "event id not a uuid": ({"event_id": "not-a-uuid"}, "event_id: not a UUID"),
    "unknown reason": ({"reason": "bored"}, "reason: unknown"),
    "NUL in the error": ({"error_message": "bad\x00byte"}, None),
}


def _produce_dlq(n: int, context: dict) -> None:
    producer = make_producer()
    headers = [(f"dlq.{name}", value.encode()) for name, value in {**GOOD_CONTEXT, "original_offset": str(n),
                                                                    **context}.items()]
    producer.produce(topic(DEAD_LETTER_TOPIC), key=b"k", value=b"v%d" % n, headers=headers, partition=0)
    assert producer.flush(10) == 0


def _persist_all(expected: int, timeout: float = 30) -> None:
    consumer = make_consumer(topic(PERSISTER_GROUP), **{"enable.auto.offset.store": True})
    consumer.subscribe([topic(DEAD_LETTER_TOPIC)])
    deadline = time.monotonic() + timeout
    try:
        while DeadLetter.objects.count() < expected:
            assert time.monotonic() < deadline, "dead letters not stored in time"
            persist_batch(consumer, wait=0.5)
    finally:
        consumer.close()


def test_malformed_context_is_stored_flagged_and_the_messages_behind_it_are_stored_too(topic_prefix):
    for n, (context, _) in enumerate(HOSTILE.values()):
        _produce_dlq(n, context)
    _produce_dlq(99, {})  # a well-formed one behind them
    _persist_all(len(HOSTILE) + 1)
    rows = {bytes(row.payload): row for row in DeadLetter.objects.all()}
    for n, (name, (_, detail)) in enumerate(HOSTILE.items()):
        row = rows[b"v%d" % n]
        if detail is None:  # stored as it came, only made storable
            assert not row.malformed and row.error_message == "bad\\x00byte", name
        else:
            assert row.malformed and detail in row.malformed_detail, name
    assert rows[b"v1"].stage == "s" * 64
    assert rows[b"v5"].reason == DeadLetter.Reason.UNKNOWN
    good = rows[b"v99"]
    assert not good.malformed and good.reason == DeadLetter.Reason.PERMANENT and good.original_offset == 99


def test_the_reason_of_a_real_dead_letter_is_stored_and_invalid_ones_cannot_be_replayed(make_consumer_for, group_id):
    permanent = support.purchase_created(7)
    support.SCRIPT[7] = ["permanent"]
    support.produce("purchase-created", [(b"x", b"garbage"), (b"7", permanent.to_json())])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 2)
    _persist_all(2)
    invalid = DeadLetter.objects.get(reason=DeadLetter.Reason.INVALID)
    failed = DeadLetter.objects.get(reason=DeadLetter.Reason.PERMANENT)
    assert failed.event_id == permanent.event_id and not invalid.malformed
    malformed = DeadLetter.objects.create(**{**_fields_of(failed), "event_id": None, "malformed": True,
                                             "original_offset": 10})
    cut = DeadLetter.objects.create(**{**_fields_of(failed), "event_id": None, "cut": {"value": "2000000 ab"},
                                       "original_offset": 11})
    result = dead_letter_actions.replay([invalid, failed, malformed, cut], actor="ops")
    assert result.replayed == 1 and result.refused == {"invalid": 1, "malformed": 1, "cut": 1}
    assert len(support.read_topic("purchase-created", 3)) == 3  # the two originals and the one replay


def _fields_of(row: DeadLetter) -> dict:
    names = ["stage", "consumer_group", "event_type", "original_topic", "original_partition", "key", "headers",
             "payload", "reason", "error_class", "error_message", "attempts", "first_failed_at", "last_failed_at"]
    return {name: getattr(row, name) for name in names}


def test_the_admin_filters_dead_letters_by_reason_and_malformed(admin_client):
    DeadLetterFactory(reason=DeadLetter.Reason.INVALID, error_message="garbage one")
    DeadLetterFactory(reason=DeadLetter.Reason.EXHAUSTED, error_message="timed out twice", malformed=True,
                      malformed_detail="last_failed_at: not a date")
    invalid = admin_client.get("/admin/workers/deadletter/?reason__exact=invalid").context["cl"]
    assert [row.error_message for row in invalid.result_list] == ["garbage one"]
    malformed = admin_client.get("/admin/workers/deadletter/?malformed__exact=1").context["cl"]
    assert [row.error_message for row in malformed.result_list] == ["timed out twice"]
