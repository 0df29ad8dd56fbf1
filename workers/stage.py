"""What a stage is: the only things a stage's consumer says about itself."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from enrollment.events import Event, topic

Handler = Callable[[Event], None]
BatchHandler = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class Stage:
    """A pipeline stage.

    handler:        does the work of one event. Runs inside the framework's DB transaction; it may call
                    `workers.outbox.emit()`, which writes to the outbox in that same transaction. Raise
                    TransientError / PermanentError (workers.errors) to say how a failure should be treated.
    batch_handler:  optional; does the work of many events at once (e.g. one HTTP call for a whole batch),
                    same transaction rules. When it raises, the framework falls back to `handler` one event
                    at a time, each in its own transaction.
    batchable:      whether several events may share one transaction at all.
    record_processed: write a ProcessedEvent row per event (skip events already processed by this group).
                    A stage whose effect is idempotent by nature and outside the DB (cache deletes) may turn
                    it off.
    dead_letters:   False for stages that must never dead-letter (cache): failures are logged and counted.
    """

    name: str
    group_id: str
    topics: tuple[str, ...]  # base topic names; the configured prefix is added at run time
    handler: Handler
    max_attempts: int = 3
    batch_handler: BatchHandler | None = None
    batchable: bool = True
    record_processed: bool = True
    dead_letters: bool = True
    on_close: Callable[[], None] | None = None  # release what the handler holds (HTTP sessions) at shutdown

    def topic_names(self) -> list[str]:
        return [topic(name) for name in self.topics]

    def kafka_group_id(self) -> str:
        """The Kafka consumer group: the configured prefix (shared with topics) + group_id. ProcessedEvent rows
        keep the bare group_id."""
        return topic(self.group_id)
