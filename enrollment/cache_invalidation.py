"""Delete a student's cached pages when their enrollment changes (purchase, trainer, sessions).

Fire-and-forget: a Redis failure is logged and counted, never raised (pages then refresh at their expiry).
Keys go through Django's cache API, like the views that set them, so both agree on the real Redis key
(django-redis stores `student:home:42` as `:1:student:home:42`: empty KEY_PREFIX, version 1).
"""
from __future__ import annotations

import logging

from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from enrollment.events import PURCHASE_CREATED, SESSIONS_SCHEDULED, TRAINER_ALLOCATED, Event
from workers import metrics
from workers.stage import Stage

log = logging.getLogger(__name__)

INVALIDATING_EVENTS = frozenset({PURCHASE_CREATED, TRAINER_ALLOCATED, SESSIONS_SCHEDULED})
CACHE_ERRORS = (ConnectionInterrupted, RedisError, OSError)


def home_key(student_id: int) -> str:
    return f"student:home:{student_id}"


def learning_key(student_id: int) -> str:
    return f"student:learning:{student_id}"


def page_keys(student_id: int) -> list[str]:
    return [home_key(student_id), learning_key(student_id)]


def handle_cache_event(event: Event) -> None:
    student_id = event.student_id
    if event.event_type not in INVALIDATING_EVENTS or student_id is None:
        return
    try:
        cache.delete_many(page_keys(student_id))
    except CACHE_ERRORS as exc:
        metrics.CACHE_FAILURES.inc()
        log.warning(
            "cache invalidation failed",
            extra={"student_id": student_id, "event_id": str(event.event_id), "error": repr(exc)},
        )


STAGE = Stage(
    name="cache",
    group_id="cache-invalidation-workers",
    topics=("purchase-created", "trainer-allocated", "sessions-scheduled"),
    handler=handle_cache_event,
    max_attempts=1,
    record_processed=False,
    dead_letters=False,
)
