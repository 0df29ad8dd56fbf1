"""Delete a student's cached pages when their enrollment changes (purchase, trainer, sessions, a cancellation).

Fire-and-forget: a Redis failure is logged and counted, never raised (pages then refresh at their expiry).
Keys go through Django's cache API, like the views that set them, so both agree on the real Redis key
(django-redis stores `student:home:42` as `:1:student:home:42`: empty KEY_PREFIX, version 1).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted
from prometheus_client import Counter
from redis.exceptions import RedisError

from enrollment.events import (
    ALLOCATION_RELEASED,
    PURCHASE_CANCELLED,
    PURCHASE_CREATED,
    SESSIONS_SCHEDULED,
    TRAINER_ALLOCATED,
)
from workers.envelope import Event
from workers.stage import DeadLetterPolicy, Ordering, RetryPolicy, Stage

log = logging.getLogger(__name__)

INVALIDATING_EVENTS = frozenset(
    {PURCHASE_CREATED, TRAINER_ALLOCATED, SESSIONS_SCHEDULED, PURCHASE_CANCELLED, ALLOCATION_RELEASED}
)
CACHE_ERRORS = (ConnectionInterrupted, RedisError, OSError)
CACHE_FAILURES = Counter("pipeline_cache_invalidation_failures_total", "Cache deletes that failed (acknowledged)")


def home_key(student_id: int) -> str:
    return f"student:home:{student_id}"


def learning_key(student_id: int) -> str:
    return f"student:learning:{student_id}"


def page_keys(student_id: int) -> list[str]:
    return [home_key(student_id), learning_key(student_id)]


def handle_cache_event(event: Event) -> None:
    handle_cache_events([event])


def handle_cache_events(events: Sequence[Event]) -> None:
    """One DEL for every student of the batch. Never raises on a Redis failure: logged and counted."""
    students = sorted({e.payload.student_id for e in events if e.event_type in INVALIDATING_EVENTS})
    if not students:
        return
    try:
        cache.delete_many([key for student_id in students for key in page_keys(student_id)])
    except CACHE_ERRORS as exc:
        CACHE_FAILURES.inc(len(students))
        log.warning(
            "cache invalidation failed",
            extra={"student_ids": students[:20], "students": len(students), "error": repr(exc)},
        )


STAGE = Stage(
    name="cache",
    group_id="cache-invalidation-workers",
    topics=("purchase-created", "trainer-allocated", "sessions-scheduled", "purchase-cancelled", "allocation-released"),
    handler=handle_cache_event,
    batch_handler=handle_cache_events,
    retry=RetryPolicy(max_attempts=1),
    record_processed=False,
    dead_letters=DeadLetterPolicy.LOG_AND_COUNT,
    ordering=Ordering.NONE,  # deleting a cached page twice, or late, is harmless: nothing waits behind a retry
)
