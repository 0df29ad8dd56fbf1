"""Kafka client configuration in one place, so every producer, consumer and admin client agrees; topic names.

Every topic and consumer group name carries `settings.KAFKA_TOPIC_PREFIX` (empty in production), so several
pipelines or test runs can share one broker.
"""
from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic
from django.conf import settings

# The framework's own topic: every stage's dead letters (workers.dead_letters).
DEAD_LETTER_TOPIC = "dead-letter-queue"
# The largest message a producer sends (the broker's default limit is 1 MiB too); dead letters are cut below it.
PRODUCER_MAX_BYTES = 1_048_576
# A consumer that does not poll for this long leaves the group; a batch and a run of retries stay well under it.
MAX_POLL_INTERVAL_MS = 300_000


def topic(base_name: str) -> str:
    """The real topic (or consumer group) name for a base name, with the configured prefix."""
    return f"{settings.KAFKA_TOPIC_PREFIX}{base_name}"


def pipeline_topics() -> list[str]:
    """Base names of every topic of the pipeline: the contract's event topics, then the dead-letter topic."""
    from workers.registry import contract

    return [*dict.fromkeys(contract().topics.values()), DEAD_LETTER_TOPIC]


def base_config() -> dict[str, Any]:
    """Where the brokers are and how this process authenticates (settings.KAFKA_SECURITY_PROTOCOL and friends)."""
    config: dict[str, Any] = {"bootstrap.servers": settings.KAFKA_BROKERS,
                              "security.protocol": settings.KAFKA_SECURITY_PROTOCOL}
    if settings.KAFKA_SECURITY_PROTOCOL.startswith("SASL"):
        config.update({"sasl.mechanism": settings.KAFKA_SASL_MECHANISM, "sasl.username": settings.KAFKA_USERNAME,
                       "sasl.password": settings.KAFKA_PASSWORD})
    if settings.KAFKA_SSL_CA_LOCATION:
        config["ssl.ca.location"] = settings.KAFKA_SSL_CA_LOCATION
    return config


def admin_client() -> AdminClient:
    return AdminClient(base_config())


def make_producer(**overrides: Any) -> Producer:
    """An idempotent producer (acks=all, no duplicates from its own retries), batching for 5 ms."""
    config = {
        **base_config(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.max.bytes": PRODUCER_MAX_BYTES,
        **overrides,
    }
    return Producer(config)


def make_consumer(group_id: str, **overrides: Any) -> Consumer:
    """A consumer that never commits on its own: offsets are committed after the database commit."""
    config = {
        **base_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        # Short enough that a consumer stuck after a broker restart ("Not coordinator") rejoins within seconds.
        "session.timeout.ms": 10_000,
        # A member learns of a rebalance from its next heartbeat, and a cooperative rebalance takes two rounds: the
        # time a moved partition has no owner is about this. 2 s gave 2.0 s pauses in `make scale-out`.
        "heartbeat.interval.ms": 500,
        **overrides,
    }
    return Consumer(config)


DAY_MS = 86_400_000


def retention_ms() -> int:
    """How long topics keep events: settings.KAFKA_TOPIC_RETENTION_DAYS, never past the dedup window."""
    days = min(settings.KAFKA_TOPIC_RETENTION_DAYS, settings.PROCESSED_EVENT_RETENTION_DAYS)
    return max(days, 1) * DAY_MS


def create_topics(
    names: list[str] | None = None, *, partitions: int | None = None, replication: int | None = None,
    timeout: float = 30,
) -> dict[str, str]:
    """Create the given topics (default: every topic of the pipeline) if missing, with `retention_ms()`,
    settings.KAFKA_TOPIC_REPLICATION replicas and KAFKA_TOPIC_MIN_INSYNC_REPLICAS (at most the replicas); an
    existing topic that keeps events longer than the dedup window gets its retention lowered to it. (An existing
    topic keeps its replication: raising it is a partition reassignment, docs/operations.md section 5.)
    Returns name -> 'created' | 'exists' | 'retention lowered'."""
    names = names if names is not None else [topic(name) for name in pipeline_topics()]
    partitions = partitions or settings.KAFKA_TOPIC_PARTITIONS
    replication = replication or settings.KAFKA_TOPIC_REPLICATION
    client = admin_client()
    existing = set(client.list_topics(timeout=timeout).topics)
    result = {name: "exists" for name in names if name in existing}
    retention = {"retention.ms": str(retention_ms())}
    config = {**retention, "min.insync.replicas": str(min(settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS, replication))}
    todo = [NewTopic(name, num_partitions=partitions, replication_factor=replication, config=config)
            for name in names if name not in existing]
    if todo:
        for name, future in client.create_topics(todo, operation_timeout=timeout, request_timeout=timeout).items():
            try:
                future.result()
                result[name] = "created"
            except Exception as exc:  # a concurrent creator won the race: that is fine
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    result[name] = "exists"
                else:
                    raise
    if settings.KAFKA_SECURITY_PROTOCOL.startswith("SASL"):
        from workers import kafka_acls

        kafka_acls.ensure(client, timeout)
    for name in _keeping_too_long([n for n in names if result[n] == "exists"], client, timeout):
        resource = ConfigResource("topic", name, incremental_configs=[
            ConfigEntry("retention.ms", retention["retention.ms"], incremental_operation=AlterConfigOpType.SET)])
        client.incremental_alter_configs([resource])[resource].result(timeout)
        result[name] = "retention lowered"
    return result


def _keeping_too_long(names: list[str], client: AdminClient, timeout: float) -> list[str]:
    """The topics whose retention.ms is past the dedup window (or infinite)."""
    if not names:
        return []
    window = settings.PROCESSED_EVENT_RETENTION_DAYS * DAY_MS
    resources = [ConfigResource("topic", name) for name in names]
    too_long = []
    for resource, future in client.describe_configs(resources, request_timeout=timeout).items():
        value = int(future.result(timeout)["retention.ms"].value)
        if value < 0 or value > window:
            too_long.append(resource.name)
    return too_long


def group_lag(group_id: str, topic_names: list[str], timeout: float = 10) -> dict[tuple[str, int], int]:
    """Per partition of the topics: messages the group has not committed yet (all of them if it never did)."""
    probe = Consumer({**base_config(), "group.id": group_id, "enable.auto.commit": False})
    try:
        metadata = probe.list_topics(timeout=timeout)
        partitions = [
            TopicPartition(name, p) for name in topic_names if name in metadata.topics
            for p in metadata.topics[name].partitions
        ]
        lag = {}
        for tp in probe.committed(partitions, timeout=timeout):
            high = probe.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout)[1]
            lag[(tp.topic, tp.partition)] = high - max(tp.offset, 0)
        return lag
    finally:
        probe.close()
