"""A test seam without a broker, as Arroyo's local backend and procrastinate's testing module give one.

`Processor` does everything between a poll and a commit (decode, claim, handle, retry, dead-letter) and takes
its messages as `SourceMessage`s and its dead-letter publisher as an argument. Driven from here, processing
and handler tests need only PostgreSQL:

    processor, dead_letters = local_processor(stage)
    processor.process([source_message(event, "purchase-created", offset=0)])
    assert dead_letters.records == []

The consume loop itself (polling, committing, rebalances) is tested against the real broker.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from workers.dead_letters import DeadLetterRecord, SourceMessage
from workers.envelope import Event
from workers.kafka import topic
from workers.processing import Processor
from workers.retry import Backoff, CircuitBreaker
from workers.stage import Stage


class InMemoryDeadLetters:
    """Collects what a DeadLetterPublisher would publish (and acknowledges every record at once)."""

    def __init__(self) -> None:
        self.records: list[DeadLetterRecord] = []

    def publish(self, records: Sequence[DeadLetterRecord]) -> None:
        self.records.extend(records)

    @property
    def reasons(self) -> list[str]:
        return [record.reason for record in self.records]


def source_message(
    value: Event | bytes | None, topic_base: str, *, partition: int = 0, offset: int = 0,
    key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None,
) -> SourceMessage:
    """A message as the consumer would have polled it from `topic_base` (prefix added); an Event is encoded
    and keyed by its partition key unless `key` says otherwise."""
    if isinstance(value, Event):
        key = key if key is not None else str(value.key).encode()
        value = value.to_json()
    return SourceMessage(topic=topic(topic_base), partition=partition, offset=offset, key=key, value=value,
                         headers=list(headers or []))


def local_processor(
    stage: Stage, *, breaker: CircuitBreaker | None = None
) -> tuple[Processor, InMemoryDeadLetters]:
    """A Processor for `stage` with an in-memory dead-letter publisher, and that publisher."""
    dead_letters = InMemoryDeadLetters()
    processor = Processor(
        stage,
        backoff=Backoff(settings.RETRY_BASE_SECONDS, settings.RETRY_MAX_SECONDS),
        breaker=breaker or CircuitBreaker(stage.name),
        dead_letters=dead_letters,  # type: ignore[arg-type]  (the same publish() interface)
    )
    return processor, dead_letters
