"""Dead-lettering: a message a stage gives up on goes to `dead-letter-queue` with its full context.

Format (the Kafka Connect / Spring convention): the DLQ message's key and value are the original key and value,
byte for byte; its headers are the original headers followed by `dlq.*` headers with the context (original
topic, partition, offset, consumer group, stage, reason, error class and message, traceback, attempts, first and
last failure, correlation id, event id, partition key). `publish()` waits for the broker's acknowledgement, so a
dead letter is durable before the consumer commits the offset past the original message.

Dead-lettering is total: a copy that would be over the broker's limit is cut to fit (workers.oversize), and one
the broker still refuses for its size is sent again with only its context. So no message can make the
dead-letter step fail for good and stall the partitions behind it.
"""
from __future__ import annotations

import base64
import datetime
import logging
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer

from workers import metrics, oversize
from workers.kafka import DEAD_LETTER_TOPIC, topic

log = logging.getLogger(__name__)
HEADER_PREFIX = "dlq."
CUT_MARK = HEADER_PREFIX + oversize.CUT_PREFIX  # the headers that describe a part cut to fit the broker
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

    def context_headers(self) -> list[tuple[str, bytes]]:
        """The dlq.* headers: why and where the message failed."""
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
        return [(HEADER_PREFIX + name, b"" if value is None else str(value).encode())
                for name, value in context.items()]

    def message(self, *, minimal: bool = False) -> tuple[bytes | None, bytes | None, oversize.HeaderList]:
        """(key, value, headers) of the DLQ copy: the original parts and the context, cut to fit if need be."""
        parts = (self.source.key, self.source.value, self.source.headers, self.context_headers())
        return oversize.minimal(*parts) if minimal else oversize.fit(*parts)


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
        """Publish and wait for every acknowledgement; raise DeadLetterPublishError if any is missing.

        A copy refused for its size (by the producer, or by a broker whose limit is lower than ours) is sent
        again as its minimal version; only an outage or a broker that refuses even that raises."""
        if not records:
            return
        cut: set[int] = set()  # ids of the records whose copy was cut or minimal
        too_large = self._send(records, minimal=False, cut=cut)
        if too_large:
            log.warning("%d dead letter(s) too large even when cut; sending their context only", len(too_large),
                        extra={"stage": records[0].stage})
            if self._send(too_large, minimal=True, cut=cut):
                raise DeadLetterPublishError("the broker refuses even the minimal dead-letter copy")
        for record in records:
            if id(record) in cut:
                metrics.DEAD_LETTERS_CUT.labels(record.stage).inc()
            metrics.EVENTS_DEAD_LETTERED.labels(record.stage, record.reason).inc()
            log.error(
                "dead-lettered %s: %s", record.reason, record.error_message,
                extra={
                    "stage": record.stage, "error_class": record.error_class, "event_id": record.event_id,
                    "correlation_id": record.correlation_id, "topic": record.source.topic,
                    "partition": record.source.partition, "offset": record.source.offset,
                },
            )

    def _send(self, records: list[DeadLetterRecord], *, minimal: bool, cut: set[int]) -> list[DeadLetterRecord]:
        """Produce the copies and wait for the broker; add to `cut` the records whose copy is not the original.
        Returns the records refused for their size; raises DeadLetterPublishError for any other failure."""
        too_large: list[DeadLetterRecord] = []
        failed: list[str] = []
        acked = 0

        def on_delivery(record: DeadLetterRecord, err: KafkaError | None, msg) -> None:
            nonlocal acked
            if err is None:
                acked += 1
            elif err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                too_large.append(record)
            else:
                failed.append(str(err))

        name = topic(DEAD_LETTER_TOPIC)
        for record in records:
            key, value, headers = record.message(minimal=minimal)
            if minimal or any(name.startswith(CUT_MARK) for name, _ in headers):
                cut.add(id(record))
            try:
                self.producer.produce(name, key=key, value=value, headers=headers,
                                      on_delivery=lambda err, msg, r=record: on_delivery(r, err, msg))
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise DeadLetterPublishError(f"dead letter not produced: {exc}") from exc
                too_large.append(record)
        self.producer.flush(self.timeout)
        if failed or acked + len(too_large) != len(records):
            raise DeadLetterPublishError(
                f"{len(records) - acked - len(too_large)} dead letter(s) not acknowledged: {failed[:3]}")
        return too_large
