"""A stage made for testing the framework: its handler's behaviour is scripted per student id, and its effect
is a real row (a Student whose email names the event), so a duplicated effect would violate a constraint."""
from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from enrollment.events import PURCHASE_CREATED, TRAINER_ALLOCATED
from enrollment.models import Student
from workers.envelope import build_event
from workers.errors import PermanentError, Superseded, TransientError
from workers.kafka import DEAD_LETTER_TOPIC, admin_client, make_consumer, make_producer, topic
from workers.outbox import emit
from workers.stage import RetryPolicy, Stage

# student_id -> list of outcomes to play, one per call ("ok", "transient", "permanent", "bug", "superseded");
# then "ok". "superseded" writes its effect first, then raises Superseded (the framework must roll it back).
SCRIPT: dict[int, list[str]] = {}
CALLS: Counter = Counter()  # event_id -> handler calls that committed or not


def scripted_handler(event) -> None:
    CALLS[event.event_id] += 1
    plan = SCRIPT.get(event.payload.student_id, [])
    outcome = plan.pop(0) if plan else "ok"
    if outcome == "transient":
        raise TransientError("dependency unavailable")
    if outcome == "permanent":
        raise PermanentError("this can never work")
    if outcome == "bug":
        raise KeyError("unexpected")
    Student.objects.create(name="effect", email=f"{event.event_id}@effect.test")
    if outcome == "superseded":
        raise Superseded("what this event names was undone meanwhile")
    p = event.payload
    emit(TRAINER_ALLOCATED, {"allocation_id": p.purchase_id, "trainer_id": 1, "student_id": p.student_id,
                             "course_id": p.course_id}, correlation_id=event.correlation_id,
         causation_id=event.event_id)


def held_handler(event) -> None:
    """Across processes (a SIGKILLed consumer): fails transiently while a Student `hold-<student id>@script.test`
    exists, else does scripted_handler's "ok"."""
    if Student.objects.filter(email=f"hold-{event.payload.student_id}@script.test").exists():
        raise TransientError("held by the test")
    scripted_handler(event)


def make_stage(group_id: str, **overrides) -> Stage:
    return Stage(**{"name": "test", "group_id": group_id, "topics": ("purchase-created",),
                    "handler": scripted_handler, "retry": RetryPolicy(max_attempts=3), **overrides})


def purchase_created(student_id: int, correlation_id: uuid.UUID | None = None):
    return build_event(PURCHASE_CREATED, {"purchase_id": student_id, "payment_id": student_id,
                                          "student_id": student_id, "course_id": 1},
                       correlation_id=correlation_id or uuid.uuid4())


def produce(topic_base: str, values: list[tuple[bytes | None, bytes | None]], partition: int | None = 0) -> None:
    producer = make_producer()
    for key, value in values:
        kwargs = {"partition": partition} if partition is not None else {}
        producer.produce(topic(topic_base), key=key, value=value, **kwargs)
    assert producer.flush(10) == 0


def produce_events(events, partition: int | None = 0) -> None:
    produce("purchase-created", [(str(e.key).encode(), e.to_json()) for e in events], partition)


def effects(events) -> int:
    return Student.objects.filter(email__in=[f"{e.event_id}@effect.test" for e in events]).count()


def effect_order(events) -> list:
    """The event ids of `events` whose effect committed, in the order they committed (the rows' ids)."""
    emails = Student.objects.filter(email__in=[f"{e.event_id}@effect.test" for e in events]).order_by("pk")
    return [uuid.UUID(email.split("@")[0]) for email in emails.values_list("email", flat=True)]


class Members:
    """Several consumers of one group, polled in turn (poll_until takes it as one consumer)."""

    def __init__(self, *consumers) -> None:
        self.consumers = list(consumers)

    def poll_once(self) -> None:
        for consumer in self.consumers:
            consumer.poll_once()


def poll_until(consumer, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        consumer.poll_once()


def read_topic(topic_base: str, expected: int, timeout: float = 15.0) -> list:
    """Every message of a topic (all partitions), waiting until `expected` have arrived."""
    consumer = make_consumer(f"reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic(topic_base)])
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append(msg)
        # a little longer, to see messages beyond the expected count
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error():
                out.append(msg)
    finally:
        consumer.close()
    return out


def dead_letters(expected: int, timeout: float = 15.0) -> list:
    return read_topic(DEAD_LETTER_TOPIC, expected, timeout)


def committed_offset(group_id: str, topic_base: str, partition: int = 0) -> int:
    consumer = make_consumer(topic(group_id))
    try:
        return consumer.committed([TopicPartition(topic(topic_base), partition)], timeout=10)[0].offset
    finally:
        consumer.close()


def set_topic_config(name: str, key: str, value: str) -> None:
    """Change one config of a real topic, as an operator with kafka-configs.sh would."""
    client = admin_client()
    resource = ConfigResource("topic", name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    client.incremental_alter_configs([resource])[resource].result(10)


def staff(django_user_model, username: str, *codenames: str):
    """A staff user with exactly these permissions of the workers app (password "pw")."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username=username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="workers", codename__in=codenames))
    return user
