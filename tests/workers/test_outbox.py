"""The transactional outbox: rows commit with the state change, are published after commit, and the relay
publishes whatever was left behind."""
import datetime
import os
import subprocess
import threading
import time
import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from enrollment.events import TRAINER_ALLOCATED
from enrollment.models import Student
from tests.conftest import ROOT
from tests.factories import StudentFactory
from tests.workers import support
from workers import outbox as outbox_module
from workers.envelope import topic_for_event_type
from workers.kafka import make_producer
from workers.models import DeadLetter, OutboxEvent, OutboxPending, ProcessedEvent
from workers.outbox import (
    Emission,
    OutboxPublisher,
    emit,
    emit_many,
    emit_with,
    mark_sent,
    mark_sent_in_background,
    prune,
    publisher,
)
from workers.relay import relay_once

pytestmark = pytest.mark.django_db(transaction=True)
PAYLOAD = {"allocation_id": 1, "trainer_id": 2, "student_id": 3, "course_id": 4}


def _leftover_rows(n: int) -> list[OutboxEvent]:
    """Rows committed by a process that died before publishing them."""
    old = timezone.now() - datetime.timedelta(minutes=1)
    rows = []
    for i in range(n):
        event = support.purchase_created(i + 1)
        rows.append(OutboxEvent.objects.create(event_id=event.event_id, event_type=event.event_type,
                                               topic=topic_for_event_type(event.event_type), key=str(i + 1),
                                               value=event.to_json(), correlation_id=event.correlation_id))
    OutboxEvent.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=old)
    return rows


def test_emit_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        emit(TRAINER_ALLOCATED, PAYLOAD, correlation_id=uuid.uuid4())


def test_a_rolled_back_transaction_emits_nothing(topic_prefix):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        emit(TRAINER_ALLOCATED, PAYLOAD, correlation_id=uuid.uuid4())
        1 / 0  # noqa: B018  (an error inside the transaction)
    assert not OutboxEvent.objects.exists()
    assert support.read_topic("trainer-allocated", 0, timeout=1) == []


def test_emitted_event_is_published_after_commit_with_its_envelope(topic_prefix):
    correlation, cause = uuid.uuid4(), uuid.uuid4()
    with transaction.atomic():
        event = emit(TRAINER_ALLOCATED, PAYLOAD, correlation_id=correlation, causation_id=cause)
    [message] = support.read_topic("trainer-allocated", 1)
    assert message.key() == b"3"
    assert message.value() == bytes(OutboxEvent.objects.get().value) == event.to_json()
    assert (event.correlation_id, event.causation_id) == (correlation, cause)


def test_relay_publishes_left_over_rows_and_marks_them_sent(topic_prefix):
    rows = _leftover_rows(5)
    young = _leftover_rows(1)[0]
    OutboxEvent.objects.filter(pk=young.pk).update(created_at=timezone.now())
    assert relay_once(OutboxPublisher(), grace_seconds=2) == 5
    assert {m.value() for m in support.read_topic("purchase-created", 5)} == {bytes(r.value) for r in rows}
    assert OutboxEvent.objects.sent().count() == 5
    assert list(OutboxEvent.objects.unsent()) == [young]  # left to the producer that owns it


def _xmin(pk: int) -> str:
    """The transaction that wrote the row's current version: an UPDATE of the row changes it."""
    with connection.cursor() as cur:
        cur.execute("SELECT xmin::text FROM outbox_events WHERE id = %s", [pk])
        return cur.fetchone()[0]


def test_every_outbox_row_is_born_unsent_whoever_inserts_it(topic_prefix):
    """The hot paths' SQL and a plain ORM insert alike: no path can write an event that is never published."""
    student = StudentFactory()
    with transaction.atomic():
        many = emit_many([Emission(TRAINER_ALLOCATED, PAYLOAD, uuid.uuid4()) for _ in range(3)])
        by_orm = _leftover_rows(1)[0]
        assert set(OutboxEvent.objects.unsent().values_list("event_id", flat=True)) == {
            *(e.event_id for e in many), by_orm.event_id}
    one = emit_with("INSERT INTO students (id, name, email, created_at) VALUES (%s, 'Ada', 'ada@example.com', now())"
                    " RETURNING id", [student.pk + 1000], Emission(TRAINER_ALLOCATED, PAYLOAD, uuid.uuid4()))
    assert OutboxEvent.objects.unsent().filter(event_id=one.event_id).exists()
    assert OutboxPending.objects.count() == OutboxEvent.objects.count() == 5


def test_marking_sent_leaves_the_outbox_row_itself_untouched(topic_prefix):
    """Sent is the pending row deleted, not an UPDATE that writes a new version of the row and its ~1 KB value."""
    rows = _leftover_rows(3)
    before = {row.pk: _xmin(row.pk) for row in rows}
    mark_sent([rows[0].pk, rows[1].pk])
    mark_sent([rows[0].pk])  # again: nothing left to do
    assert list(OutboxEvent.objects.unsent()) == [rows[2]]
    assert {row.pk: _xmin(row.pk) for row in rows} == before


def test_emit_with_commits_the_change_and_the_event_together_or_neither(topic_prefix, monkeypatch):
    student = StudentFactory()
    change = "INSERT INTO students (id, name, email, created_at) VALUES (%s, %s, %s, now()) RETURNING id"
    event = emit_with(change, [student.pk + 1000, "Ada", "ada@example.com"],
                      Emission(TRAINER_ALLOCATED, PAYLOAD, uuid.uuid4()))
    assert OutboxEvent.objects.get().event_id == event.event_id
    assert [m.value() for m in support.read_topic("trainer-allocated", 1)] == [event.to_json()]

    with pytest.raises(IntegrityError):  # the change fails (duplicate primary key): no outbox row either
        emit_with(change, [student.pk, "Same id", "other@example.com"], Emission(TRAINER_ALLOCATED, PAYLOAD,
                                                                               uuid.uuid4()))
    # The outbox row fails (its event id is taken; a fault only a patch can make): the change is undone too.
    real_prepare = outbox_module.prepare

    def clashing(emission):
        new_event, message = real_prepare(emission)
        return new_event, message._replace(event_id=event.event_id)

    monkeypatch.setattr(outbox_module, "prepare", clashing)
    with pytest.raises(IntegrityError):
        emit_with(change, [student.pk + 2000, "Bob", "bob@example.com"], Emission(TRAINER_ALLOCATED, PAYLOAD,
                                                                                  uuid.uuid4()))
    assert not Student.objects.filter(pk=student.pk + 2000).exists()
    assert OutboxEvent.objects.count() == 1
    assert [m.value() for m in support.read_topic("trainer-allocated", 1, timeout=2)] == [event.to_json()]


def test_a_process_without_a_consume_loop_marks_what_it_published_as_sent(topic_prefix):
    """The web workers' background marker: the relay then has nothing to publish a second time."""
    stop = threading.Event()
    marker = mark_sent_in_background(publisher(), interval=0.05, stop=stop)
    try:
        with transaction.atomic():  # published after commit by the process-wide publisher, as in a web request
            emit_many([Emission(TRAINER_ALLOCATED, PAYLOAD, uuid.uuid4()) for _ in range(3)])
        deadline = time.monotonic() + 10
        while OutboxEvent.objects.unsent().exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not OutboxEvent.objects.unsent().exists()
        assert relay_once(OutboxPublisher(), grace_seconds=0) == 0
    finally:
        stop.set()
        marker.join(5)
    assert not marker.is_alive()


def test_relay_keeps_rows_while_the_broker_is_unreachable(topic_prefix):
    _leftover_rows(3)
    unreachable = OutboxPublisher(make_producer(**{"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1000}))
    assert relay_once(unreachable, flush_timeout=3) == 0
    waiting = OutboxEvent.objects.unsent().filter(publish_attempts=1)
    assert waiting.count() == 3
    assert all(row.next_attempt_at > timezone.now() for row in waiting)  # each backs off on its own
    assert relay_once(OutboxPublisher()) == 0
    waiting.update(next_attempt_at=timezone.now())
    assert relay_once(OutboxPublisher()) == 3


def test_a_row_that_keeps_failing_never_holds_up_the_rows_behind_it(topic_prefix):
    poison, *good = _leftover_rows(4)
    OutboxEvent.objects.filter(pk=poison.pk).update(topic="not a valid topic name!", created_at=timezone.now()
                                                   - datetime.timedelta(hours=1))  # the oldest: selected first
    relay = OutboxPublisher()
    sent = [relay_once(relay, limit=1, flush_timeout=5) for _ in range(4)]
    assert sent == [0, 1, 1, 1]
    assert not OutboxEvent.objects.unsent().filter(pk__in=[r.pk for r in good]).exists()
    poison.refresh_from_db()
    assert OutboxEvent.objects.unsent().filter(pk=poison.pk).exists()
    assert poison.publish_attempts == 1 and "topic" in poison.last_error.lower()


def test_relay_outbox_command_runs_once(topic_prefix):
    _leftover_rows(2)
    out = subprocess.run([str(ROOT / ".venv/bin/python"), "manage.py", "relay_outbox", "--once"], cwd=ROOT,
                         env=_env(topic_prefix), capture_output=True, text=True, check=True).stdout
    assert "relayed 2 outbox event(s)" in out


def _env(prefix):
    db = connection.settings_dict
    return {**os.environ, "KAFKA_TOPIC_PREFIX": prefix, "DJANGO_SETTINGS_MODULE": "settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}


def test_prune_keeps_recent_and_unsent_rows_and_what_a_dead_letter_needs():
    long_ago = timezone.now() - datetime.timedelta(days=40)
    old_sent, old_unsent, recent_sent = _leftover_rows(3)
    OutboxEvent.objects.filter(pk__in=[old_sent.pk, old_unsent.pk]).update(created_at=long_ago)
    mark_sent([old_sent.pk, recent_sent.pk])
    needed, resolved, plain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for event_id in (needed, resolved, plain):
        ProcessedEvent.objects.create(consumer="cache-invalidation-workers", event_id=event_id, event_type="X")
    ProcessedEvent.objects.update(processed_at=long_ago)
    for event_id, status in ((needed, DeadLetter.Status.NEW), (resolved, DeadLetter.Status.RESOLVED)):
        DeadLetter.objects.create(stage="allocations", consumer_group="trainer-allocation-workers",
                                  event_id=event_id, original_topic="purchase-created", original_partition=0,
                                  original_offset=hash(event_id) % 1000, payload=b"{}", error_class="E",
                                  error_message="m", first_failed_at=long_ago, last_failed_at=long_ago,
                                  status=status)

    orphan = _leftover_rows(1)[0]
    OutboxEvent.objects.filter(pk=orphan.pk).delete()  # by hand: its pending row stays behind
    assert OutboxPending.objects.filter(outbox_id=orphan.pk).exists()

    assert prune(outbox_days=7, processed_days=30) == {"outbox_events": 1, "processed_events": 2}
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {old_unsent.pk, recent_sent.pk}
    assert set(OutboxPending.objects.values_list("outbox_id", flat=True)) == {old_unsent.pk}
    assert list(ProcessedEvent.objects.values_list("event_id", flat=True)) == [needed]
