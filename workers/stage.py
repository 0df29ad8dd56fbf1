"""What a stage is: the only things a stage's consumer says about itself.

A stage is registered by dotted path in `settings.PIPELINE_STAGES` (workers.registry); the framework owns the
loop, the transactions, retries, dead letters, metrics and the commit policy, and hands each event (or each
batch) to the stage's handler.
"""
from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction

from workers import metrics
from workers.errors import OUTAGE_ERRORS, TRANSIENT_ERRORS
from workers.kafka import topic

if TYPE_CHECKING:
    from workers.envelope import Event
    from workers.retry import Backoff
    from workers.trace import TraceSection

Handler = Callable[["Event"], None]
BatchHandler = Callable[[Sequence["Event"]], None]
TraceHook = Callable[[uuid.UUID], "TraceSection"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a stage's failures are retried (as procrastinate's RetryStrategy).

    max_attempts:     attempts in all, the first one included; then the event is dead-lettered.
    backoff:          the waits between attempts; None: settings.RETRY_BASE_SECONDS / RETRY_MAX_SECONDS.
    outage_errors:    exception classes of the stage's own libraries that mean "the dependency is down",
                      on top of workers.errors.OUTAGE_ERRORS: retried, and counted by the circuit breaker.
                      A stage whose client already maps its errors to DependencyUnavailable names none.
    transient_errors: exception classes worth retrying that are not outages, on top of TransientError.
    """

    max_attempts: int = 3
    backoff: Backoff | None = None
    outage_errors: tuple[type[BaseException], ...] = ()
    transient_errors: tuple[type[BaseException], ...] = ()

    def is_outage(self, exc: BaseException) -> bool:
        return isinstance(exc, (*OUTAGE_ERRORS, *self.outage_errors))

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (*TRANSIENT_ERRORS, *self.outage_errors, *self.transient_errors))


@dataclass(frozen=True)
class DeadLetterLimit:
    """When a stage stops the line (workers.line): more than `max_share` of the last `window` events given up on
    (dead-lettered, or dropped under LOG_AND_COUNT), or `max_in_a_row` of them in a row."""

    max_share: float = 0.5
    window: int = 200
    max_in_a_row: int = 100

    @classmethod
    def from_settings(cls) -> DeadLetterLimit:
        """The default of every stage: settings.STOP_THE_LINE_SHARE / _WINDOW / _IN_A_ROW."""
        from django.conf import settings

        return cls(max_share=settings.STOP_THE_LINE_SHARE, window=settings.STOP_THE_LINE_WINDOW,
                   max_in_a_row=settings.STOP_THE_LINE_IN_A_ROW)


class Ordering(enum.Enum):
    """Whether a key's events keep their order through failures (per stage; see workers.ordering).

    KEY:              while an event of key K waits for a retry, or sits in the dead letters unresolved, the
                      group's later events of K are parked behind it in order, without spending attempts.
                      For stages that change state.
    KEY_RETRIES_ONLY: the same through retries; a dead letter releases its key (the events behind it run).
    NONE:             a retried event may overtake later events of its key: for work that is idempotent and
                      order-free by nature (deleting cached pages).
    """

    KEY = "key"
    KEY_RETRIES_ONLY = "key-retries-only"
    NONE = "none"

    @property
    def by_key(self) -> bool:
        return self is not Ordering.NONE

    @property
    def through_dead_letters(self) -> bool:
        return self is Ordering.KEY


class DeadLetterPolicy(enum.Enum):
    """What happens to a message the stage gives up on (as Arroyo's DlqPolicy).

    PUBLISH:       to the dead-letter topic with its full context, acknowledged before the offset moves on.
    LOG_AND_COUNT: logged and counted (`pipeline_events_dropped_total`), then acknowledged: for a stage whose
                   work is optional and idempotent by nature, such as deleting cached pages.
    """

    PUBLISH = "publish"
    LOG_AND_COUNT = "log_and_count"


@dataclass(frozen=True)
class Stage:
    """A pipeline stage.

    handler:        does the work of one event. Runs inside the framework's DB transaction; it may call
                    `workers.outbox.emit()`, which writes to the outbox in that same transaction. Raise
                    TransientError / PermanentError (workers.errors) to say how a failure should be treated.
    batch_handler:  optional; does the work of many events at once (e.g. one HTTP call for a whole batch),
                    same transaction rules. When it raises, the framework falls back to `handler` one event
                    at a time, each in its own transaction.
    batchable:      whether several events may share one transaction at all (a non-batchable stage has no
                    batch handler).
    record_processed: write a ProcessedEvent row per event (skip events already processed by this group).
                    A stage whose effect is idempotent by nature and outside the DB (cache deletes) may turn
                    it off.
    retry, dead_letters, ordering: the stage's policies (above). `settings.STAGE_ORDERING` may override
                    `ordering` per stage name (workers.registry).
    dead_letter_limit: when the stage pauses itself instead of dead-lettering on (None: never).
    trace:          optional hook: correlation id -> this stage's rows of the enrollment trace (workers.trace).
    on_close:       release what the handler holds (HTTP sessions) at shutdown.
    """

    name: str
    group_id: str
    topics: tuple[str, ...]  # base topic names; the configured prefix is added at run time
    handler: Handler
    batch_handler: BatchHandler | None = None
    batchable: bool = True
    record_processed: bool = True
    retry: RetryPolicy = RetryPolicy()
    dead_letters: DeadLetterPolicy = DeadLetterPolicy.PUBLISH
    ordering: Ordering = Ordering.KEY
    dead_letter_limit: DeadLetterLimit | None = field(default_factory=DeadLetterLimit.from_settings)
    trace: TraceHook | None = None
    on_close: Callable[[], None] | None = None

    def topic_names(self) -> list[str]:
        return [topic(name) for name in self.topics]

    def kafka_group_id(self) -> str:
        """The Kafka consumer group: the configured prefix (shared with topics) + group_id. ProcessedEvent rows
        keep the bare group_id."""
        return topic(self.group_id)


log = logging.getLogger(__name__)


def skip_superseded(stage: Stage, event: Event, reason: str) -> None:
    """For a batch handler: skip one event of the batch as superseded (workers.errors.Superseded), counted and
    logged at commit as the framework does for a one-event handler, without failing the whole batch."""
    transaction.on_commit(metrics.EVENTS_SUPERSEDED.labels(stage.name, event.event_type).inc)
    log.info("superseded: %s", reason, extra={"stage": stage.name, "event_id": str(event.event_id),
                                              "correlation_id": str(event.correlation_id)})
