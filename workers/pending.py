"""PendingRetry rows: an event waiting for its next attempt, with the original message inside (see
workers.processing for why retries are a table), and the error parts every failure record carries."""
from __future__ import annotations

import datetime
import traceback

from workers.dead_letters import SourceMessage, decode_headers, encode_headers
from workers.envelope import Event
from workers.models import PendingRetry


def error_parts(exc: BaseException) -> tuple[str, str, str]:
    """(class path, message, traceback) of an exception."""
    cls = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return cls, str(exc) or cls, "".join(traceback.format_exception(exc))


def pending_row(
    consumer: str, source: SourceMessage, event: Event, *, attempts: int, due: datetime.datetime,
    now: datetime.datetime, exc: BaseException | None = None, note: str = "", dead_lettered: bool = False,
) -> PendingRetry:
    """The row that keeps `source` for a later attempt: after `exc` failed it, or parked with `note`; or, with
    `dead_lettered`, the head that holds its key after `exc` dead-lettered it (workers.ordering)."""
    cls, message, tb = error_parts(exc) if exc is not None else ("", note, "")
    return PendingRetry(
        consumer=consumer, event_id=event.event_id, topic=source.topic, partition=source.partition,
        offset=source.offset, key=source.key, value=source.value, headers=encode_headers(source.headers),
        attempts=attempts, next_attempt_at=due, first_failed_at=now, last_failed_at=now, error_class=cls,
        error_message=message, traceback=tb, correlation_id=event.correlation_id, dead_lettered=dead_lettered,
    )


def keep(rows: list[PendingRetry]) -> None:
    """Store rows; an event already waiting (a redelivery of the same event) keeps its row and its count."""
    PendingRetry.objects.bulk_create(rows, ignore_conflicts=True)


def source_of(row: PendingRetry) -> SourceMessage:
    """The original message back from its row."""
    return SourceMessage(
        topic=row.topic, partition=row.partition, offset=row.offset,
        key=bytes(row.key) if row.key is not None else None, value=bytes(row.value),
        headers=decode_headers(row.headers),
    )
