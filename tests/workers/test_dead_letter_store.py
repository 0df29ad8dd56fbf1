"""Every message on dead-letter-queue becomes exactly one DeadLetter row with all its context, idempotently;
messages come from the real framework (a scripted stage that gives up) and are stored by `persist_batch` or by
the `consume_dead_letters` command."""
import datetime
import os
import signal
import subprocess
import time

import pytest
from django.db import connection
from django.utils.dateparse import parse_datetime

from tests.conftest import ROOT
from tests.workers import support
from workers.dead_letter_store import PERSISTER_GROUP, persist, persist_batch
from workers.dead_letters import (
    DeadLetterPublisher,
    DeadLetterRecord,
    SourceMessage,
    decode_headers,
)
from workers.kafka import DEAD_LETTER_TOPIC, make_consumer, make_producer, topic
from workers.models import DeadLetter, PendingRetry

pytestmark = pytest.mark.django_db(transaction=True)
ODD_HEADER = b"\xff\xfe\x80binary"  # not UTF-8: must survive byte for byte


def _produce_with_headers(key: bytes, value: bytes) -> None:
    producer = make_producer()
    producer.produce(topic("purchase-created"), key=key, value=value, partition=0,
                     headers=[("traceparent", b"00-abc-01"), ("odd", ODD_HEADER)])
    assert producer.flush(10) == 0


def _persist_from_topic(expected_rows: int, timeout: float = 30.0) -> None:
    """Run the persister's consume -> store -> commit cycle until the rows exist."""
    consumer = make_consumer(topic(PERSISTER_GROUP), **{"enable.auto.offset.store": True})
    consumer.subscribe([topic(DEAD_LETTER_TOPIC)])
    deadline = time.monotonic() + timeout
    try:
        while DeadLetter.objects.count() < expected_rows:
            assert time.monotonic() < deadline, "dead letters not stored in time"
            persist_batch(consumer, wait=0.5)
    finally:
        consumer.close()


def test_an_exhausted_event_becomes_one_row_with_all_its_context(make_consumer_for, group_id):
    event = support.purchase_created(3)
    support.SCRIPT[3] = ["bug"] * 10
    _produce_with_headers(b"3", event.to_json())
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.CALLS[event.event_id] == 3
                       and not PendingRetry.objects.filter(dead_lettered=False).exists())
    [message] = support.dead_letters(1)
    dlq = {k.removeprefix("dlq."): v.decode() for k, v in message.headers() if k.startswith("dlq.")}

    _persist_from_topic(1)

    row = DeadLetter.objects.get()
    assert (row.stage, row.consumer_group) == ("test", group_id)
    assert (row.event_id, row.event_type) == (event.event_id, "PURCHASE_CREATED")
    assert (row.original_topic, row.original_partition, row.original_offset) == (topic("purchase-created"), 0, 0)
    assert bytes(row.key) == b"3"
    assert bytes(row.payload) == event.to_json()  # the raw bytes, unchanged
    assert decode_headers(row.headers) == [("traceparent", b"00-abc-01"), ("odd", ODD_HEADER)]
    assert row.error_class == "builtins.KeyError"
    assert row.error_message == "'unexpected'"
    assert "KeyError: 'unexpected'" in row.traceback and "scripted_handler" in row.traceback
    assert row.attempts == 3
    assert row.first_failed_at == parse_datetime(dlq["first_failed_at"])
    assert row.last_failed_at == parse_datetime(dlq["last_failed_at"])
    assert row.first_failed_at < row.last_failed_at  # three attempts, with backoff in between
    assert (row.correlation_id, row.partition_key) == (event.correlation_id, "3")
    assert row.status == DeadLetter.Status.NEW and row.status_changed_by == ""

    # the same message again (a redelivery, or another persister reading the topic from the start)
    assert persist([message]) == 0
    _persist_from_topic(1)  # (the group committed: nothing new is read)
    assert DeadLetter.objects.count() == 1


def test_a_non_json_message_is_stored_too_and_only_once(make_consumer_for, group_id):
    support.produce("purchase-created", [(b"k-1", b"{not json")])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 1)
    [message] = support.dead_letters(1)

    assert persist([message, message]) == 1
    assert persist([message]) == 0

    row = DeadLetter.objects.get()
    assert row.event_id is None and row.correlation_id is None and row.partition_key is None
    assert bytes(row.payload) == b"{not json"
    assert bytes(row.key) == b"k-1"
    assert row.error_class == "workers.envelope.InvalidEvent"
    assert "not JSON" in row.error_message
    assert row.attempts == 0
    assert (row.original_topic, row.original_offset) == (topic("purchase-created"), 0)


def test_a_header_with_a_nul_byte_is_stored(topic_prefix):
    """jsonb refuses \\u0000: headers are stored as base64, so any bytes survive."""
    now = datetime.datetime.now(datetime.UTC)
    record = DeadLetterRecord(
        source=SourceMessage(topic=topic("purchase-created"), partition=0, offset=1, key=b"5", value=b"{}",
                             headers=[("bin", b"a\x00b"), ("nothing", None)]),
        stage="allocations", consumer_group="g", error_class="E", error_message="m", traceback="",
        attempts=0, first_failed_at=now, last_failed_at=now, reason="invalid",
    )
    DeadLetterPublisher(make_producer()).publish([record])
    [message] = support.dead_letters(1)
    assert persist([message]) == 1
    assert decode_headers(DeadLetter.objects.get().headers) == [("bin", b"a\x00b"), ("nothing", None)]


def _env(prefix: str) -> dict:
    db = connection.settings_dict
    return {**os.environ, "KAFKA_TOPIC_PREFIX": prefix, "DJANGO_SETTINGS_MODULE": "settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}


def test_consume_dead_letters_command_stores_rows(topic_prefix):
    now = datetime.datetime.now(datetime.UTC)
    records = [
        DeadLetterRecord(
            source=SourceMessage(topic=topic("purchase-created"), partition=1, offset=offset, key=b"5",
                                 value=value),
            stage="allocations", consumer_group="trainer-allocation-workers", error_class="E", error_message="m",
            traceback="tb", attempts=0, first_failed_at=now, last_failed_at=now, reason="invalid",
        )
        for offset, value in ((7, b"\x00\x01raw"), (8, b"[]"))
    ]
    DeadLetterPublisher(make_producer()).publish(records)

    process = subprocess.Popen([str(ROOT / ".venv/bin/python"), "manage.py", "consume_dead_letters"], cwd=ROOT,
                               env=_env(topic_prefix), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while DeadLetter.objects.count() < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 0, output
    rows = {row.original_offset: bytes(row.payload) for row in DeadLetter.objects.all()}
    assert rows == {7: b"\x00\x01raw", 8: b"[]"}, output
