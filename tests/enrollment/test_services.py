"""The real services answer: a produce/consume round trip through the broker, and django-redis."""
import subprocess
import uuid

import pytest
from confluent_kafka import KafkaError

from tests.conftest import ROOT, secrets_env
from workers.kafka import (
    admin_client,
    create_topics,
    make_consumer,
    make_producer,
    pipeline_topics,
)


def test_produce_consume_round_trip_through_the_broker(topic_prefix, group_id):
    topic = f"{topic_prefix}purchase-confirmed"
    producer = make_producer()
    sent = {f"student-{i}": f"value-{i}-{uuid.uuid4()}".encode() for i in range(20)}
    for key, value in sent.items():
        producer.produce(topic, key=key.encode(), value=value, headers=[("h", b"1")])
    assert producer.flush(10) == 0

    consumer = make_consumer(group_id)
    consumer.subscribe([topic])
    received = {}
    try:
        while len(received) < len(sent):
            msg = consumer.poll(10)
            assert msg is not None, f"timed out with {len(received)} of {len(sent)} messages"
            assert msg.error() is None or msg.error().code() == KafkaError._PARTITION_EOF
            received[msg.key().decode()] = msg.value()
            assert msg.headers() == [("h", b"1")]
    finally:
        consumer.close()
    assert received == sent


def test_create_topics_is_idempotent_and_creates_every_pipeline_topic(settings):
    settings.KAFKA_TOPIC_PREFIX = f"ct{uuid.uuid4().hex[:8]}."
    first = create_topics(partitions=3)
    second = create_topics(partitions=3)
    names = {settings.KAFKA_TOPIC_PREFIX + name for name in pipeline_topics()}
    assert set(first) == names and set(first.values()) == {"created"}
    assert set(second.values()) == {"exists"}
    metadata = admin_client().list_topics(timeout=10).topics
    assert all(len(metadata[name].partitions) == 3 for name in names)


def test_create_topics_command_reports_each_topic(settings):
    prefix = f"cmd{uuid.uuid4().hex[:8]}."
    out = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "create_topics", "--partitions", "2"],
        cwd=ROOT, env={"KAFKA_TOPIC_PREFIX": prefix, "PATH": "/usr/bin:/bin", **secrets_env()}, capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{prefix}purchase-confirmed: created" in out
    assert f"{prefix}dead-letter-queue: created" in out


def test_redis_set_get_delete_through_django_redis(redis_cache):
    key = f"student:home:{uuid.uuid4().int % 10**9}"
    redis_cache.set(key, {"purchases": [1, 2]}, timeout=60)
    assert redis_cache.get(key) == {"purchases": [1, 2]}
    assert redis_cache.delete(key) is True
    assert redis_cache.get(key) is None


@pytest.mark.django_db
def test_database_is_postgresql_15(django_db_blocker):
    from django.db import connection

    assert connection.vendor == "postgresql"
    assert connection.pg_version // 10000 == 15
