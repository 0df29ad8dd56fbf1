"""Dead-lettering: a message a stage gives up on goes to `dead-letter-queue` with its full context.

Format (the Kafka Connect / Spring convention): the DLQ message's key and value are the original key and value,
byte for byte; its headers are the original headers followed by `dlq.*` headers with the context (original
topic, partition, offset, consumer group, stage, error class and message, traceback, attempts, first and last
failure, correlation id, event id, partition key). `publish()` waits for the broker's acknowledgement, so a
dead letter is durable before the consumer commits the offset past the original message.
"""
from __future__ import annotations

import base64
import datetime
import logging
from dataclasses import dataclass, field

from confluent_kafka import Producer

from workers import metrics
from workers.kafka import DEAD_LETTER_TOPIC, topic

log = logging.getLogger(__name__)
HEADER_PREFIX = "dlq."
MAX_TRACEBACK_BYTES = 16_000


class DeadLetterPublishError(RuntimeError):
    """The broker did not acknowledge a dead letter; the original offset must not be committed."""


@dataclass
class SourceMessage:
    """The original message, as consumed (or as kept in a PendingRetry row)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def encode_headers(headers: list[tuple[str, bytes | None]] | None) -> list[list[str | None]]:
    """Kafka headers -> JSON that PostgreSQL can store whatever the bytes: [base64(key), base64(value) | null].
    Text would not do: jsonb refuses NUL (\u0000), and a header may hold any bytes."""
    return [
        [base64.b64encode(key.encode("utf-8", "surrogateescape")).decode(),
         None if value is None else base64.b64encode(value).decode()]
        for key, value in headers or []
    ]


def decode_headers(stored: list[list[str | None]] | None) -> list[tuple[str, bytes | None]]:
    """The exact Kafka headers back from `encode_headers()`."""
    return [
        (base64.b64decode(key).decode("utf-8", "surrogateescape"), None if value is None else base64.b64decode(value))
        for key, value in stored or []
    ]


def _text(value: str) -> str:
    """Error text that PostgreSQL can store and UTF-8 can encode: an error about hostile input may quote it
    (a NUL byte in a field name, a lone surrogate), and the dead-letter store keeps these headers as text."""
    return value.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")


@dataclass
class DeadLetterRecord:
    source: SourceMessage
    stage: str
    consumer_group: str
    error_class: str
    error_message: str
    traceback: str
    attempts: int
    first_failed_at: datetime.datetime
    last_failed_at: datetime.datetime
    reason: str  # "invalid", "permanent", "exhausted"
    event_id: str | None = None
    event_type: str | None = None
    correlation_id: str | None = None
    partition_key: str | None = None  # the contract's key field of the event (e.g. the student id)

    def headers(self) -> list[tuple[str, bytes]]:
        context = {
            "original_topic": self.source.topic,
            "original_partition": self.source.partition,
            "original_offset": self.source.offset,
            "consumer_group": self.consumer_group,
            "stage": self.stage,
            "reason": self.reason,
            "error_class": self.error_class,
            "error_message": _text(self.error_message)[:4000],
            "traceback": _text(self.traceback).encode()[-MAX_TRACEBACK_BYTES:].decode(errors="ignore"),
            "attempts": self.attempts,
            "first_failed_at": self.first_failed_at.isoformat(),
            "last_failed_at": self.last_failed_at.isoformat(),
            "event_id": self.event_id,
            "event_type": self.event_type,
            "correlation_id": self.correlation_id,
            "partition_key": self.partition_key,
        }
        # Every context header, empty when unknown: the original message may carry dlq.* headers of its own, and
        # reading the context back (the last header of a name wins) must never take one of those for ours.
        extra = [
            (HEADER_PREFIX + name, b"" if value is None else str(value).encode()) for name, value in context.items()
        ]
        return list(self.source.headers) + extra


def context_from_headers(headers: list[tuple[str, bytes]] | None) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """Split a DLQ message's headers into (dlq context, original headers)."""
    context: dict[str, str] = {}
    original: list[tuple[str, bytes]] = []
    for name, value in headers or []:
        if name.startswith(HEADER_PREFIX):
            context[name[len(HEADER_PREFIX):]] = (value or b"").decode(errors="replace")
        else:
            original.append((name, value))
    return context, original


class DeadLetterPublisher:
    def __init__(self, producer: Producer, *, timeout: float = 30.0) -> None:
        self.producer = producer
        self.timeout = timeout

    def publish(self, records: list[DeadLetterRecord]) -> None:
        """Publish and wait for every acknowledgement; raise DeadLetterPublishError if any is missing."""
        if not records:
            return
        failed: list[str] = []
        acked = 0

        def on_delivery(err, msg):
            nonlocal acked
            if err is None:
                acked += 1
            else:
                failed.append(str(err))

        name = topic(DEAD_LETTER_TOPIC)
        for record in records:
            self.producer.produce(
                name, key=record.source.key, value=record.source.value, headers=record.headers(),
                on_delivery=on_delivery,
            )
        self.producer.flush(self.timeout)
        if failed or acked != len(records):
            raise DeadLetterPublishError(f"{len(records) - acked} dead letter(s) not acknowledged: {failed[:3]}")
        for record in records:
            metrics.EVENTS_DEAD_LETTERED.labels(record.stage, record.reason).inc()
            log.error(
                "dead-lettered %s: %s", record.reason, record.error_message,
                extra={
                    "stage": record.stage, "error_class": record.error_class, "event_id": record.event_id,
                    "correlation_id": record.correlation_id, "topic": record.source.topic,
                    "partition": record.source.partition, "offset": record.source.offset,
                },
            )
