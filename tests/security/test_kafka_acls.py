"""The broker authenticates every client (SASL/SCRAM) and each process kind's principal may touch only its own
topics and group (workers/kafka_acls.py): without credentials nothing, and a stolen stage password cannot buy a
course by producing a purchase-created."""
import os
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AclOperation, AdminClient, ResourceType
from django.conf import settings

from workers import kafka_acls
from workers.kafka import admin_client, topic

pytestmark = pytest.mark.django_db


def _as(role: str, password: str | None = None) -> dict:
    return {"bootstrap.servers": settings.KAFKA_BROKERS, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": role,
            "sasl.password": password or os.environ[f"KAFKA_PASSWORD_{role.upper()}"]}


def _produce(config: dict, topic_name: str) -> KafkaError | None:
    producer = Producer({**config, "message.timeout.ms": 5000})
    outcome = []
    producer.produce(topic_name, b"x", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(10)
    return outcome[0] if outcome else KafkaError(KafkaError._MSG_TIMED_OUT)


def test_a_client_without_credentials_or_with_a_wrong_password_gets_nothing(topic_prefix):
    anonymous = AdminClient({"bootstrap.servers": settings.KAFKA_BROKERS, "socket.timeout.ms": 3000})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)
    error = _produce({"bootstrap.servers": settings.KAFKA_BROKERS}, topic("purchase-created"))
    assert error is not None  # never delivered
    with pytest.raises(KafkaException):  # refused at the SASL handshake (the client library logs "invalid credentials")
        AdminClient(_as("sessions", "guessed")).list_topics(timeout=5)


def test_the_sessions_principal_cannot_produce_to_purchase_created(topic_prefix):
    assert _produce(_as("sessions"), topic("sessions-scheduled")) is None  # its own topic
    error = _produce(_as("sessions"), topic("purchase-created"))
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_the_purchases_principal_cannot_read_another_groups_offsets_or_topics(topic_prefix):
    client = AdminClient(_as("purchases"))
    group = topic("trainer-allocation-workers")
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic("purchase-created"), 0)])]
    with pytest.raises(KafkaException, match="GROUP_AUTHORIZATION_FAILED|authorization"):
        client.list_consumer_group_offsets(request)[group].result(10)
    reader = Consumer({**_as("purchases"), "group.id": topic("purchase-creation-workers")})
    try:
        assert _committed_when_the_coordinator_is_up(reader, TopicPartition(topic("purchase-confirmed"), 0))
    finally:
        reader.close()


def _committed_when_the_coordinator_is_up(consumer: Consumer, partition: TopicPartition, seconds: float = 20) -> list:
    """Its own group's offsets: allowed. On a fresh broker the group coordinator may still be loading (a retriable
    NOT_COORDINATOR, not a refusal), so ask again until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return consumer.committed([partition], timeout=10)
        except KafkaException as exc:
            retriable = exc.args[0].code() in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                               KafkaError.COORDINATOR_NOT_AVAILABLE)
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _acls_under(client: AdminClient, prefix: str) -> list:
    return [b for b in client.describe_acls(kafka_acls.EVERY_ACL).result(10) if b.name.startswith(prefix)]


def test_a_namespace_leaves_no_acl_behind(topic_prefix):
    """A test's (or a benchmark's) topics take their ACLs with them: the broker would otherwise collect them by
    the ten thousand, and every create_topics lists them all."""
    client = admin_client()
    other = f"{topic_prefix}other."  # under the same prefix: removed too; a sibling namespace is not
    sibling = "u" + topic_prefix[1:]
    acl = [kafka_acls._allow(ResourceType.TOPIC, f"{name}x", "web", AclOperation.WRITE) for name in (other, sibling)]
    for future in client.create_acls(acl).values():
        future.result(10)
    made = _acls_under(client, topic_prefix)
    assert len(made) > 20  # every stage's topics and group
    assert kafka_acls.remove(client, topic_prefix) == len(made)
    deadline = time.monotonic() + 10
    while _acls_under(client, topic_prefix) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _acls_under(client, topic_prefix) == []
    assert [b.name for b in _acls_under(client, sibling)] == [f"{sibling}x"]
    kafka_acls.remove(client, sibling)
