"""trainer-allocated -> rolling window of sessions -> sessions-scheduled.

Sessions are scheduled only for a holding allocation: a TRAINER_ALLOCATED whose allocation was released
meanwhile (its purchase refunded) is a Superseded skip.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from django.utils import timezone

from allocations.models import TrainerAllocation
from enrollment.events import SESSIONS_SCHEDULED
from sessions_sched.scheduler import (
    WINDOW_SIZE,
    ensure_window,
    fill_windows,
    future_session_count,
)
from sessions_sched.trace import trace_section
from workers.envelope import Event
from workers.errors import PermanentError, Superseded
from workers.outbox import Emission, emit, emit_many
from workers.sql import fetch
from workers.stage import RetryPolicy, Stage, skip_superseded

log = logging.getLogger(__name__)


def handle_trainer_allocated(event: Event) -> None:
    """Fill the allocation's window and emit SESSIONS_SCHEDULED.

    Nothing created (the window is already full, or the allocation no longer holds its slot) means the work is
    already done: no event, so a duplicate TRAINER_ALLOCATED does not produce a second SESSIONS_SCHEDULED.
    """
    p = event.payload
    allocation = TrainerAllocation.objects.select_related("course").filter(pk=p.allocation_id).first()
    if allocation is None:
        raise PermanentError(f"unknown allocation {p.allocation_id}")
    if (allocation.student_id, allocation.course_id) != (p.student_id, p.course_id):
        raise PermanentError(f"allocation {p.allocation_id} is for another student or course than the event says")
    if allocation.status not in TrainerAllocation.HOLDING_STATUSES:
        raise Superseded(f"allocation {allocation.pk} is {allocation.status}")
    now = timezone.now()
    created = ensure_window(allocation, now=now, size=WINDOW_SIZE)
    if created == 0:
        log.info("session window already full: already done", extra={"allocation_id": allocation.pk})
        return
    emit(
        SESSIONS_SCHEDULED,
        {
            "allocation_id": allocation.pk,
            "student_id": allocation.student_id,
            "course_id": allocation.course_id,
            "sessions_created": created,
            "future_sessions": future_session_count(allocation.pk, now),
        },
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
    )


def handle_trainer_allocated_batch(events: Sequence[Event]) -> None:
    """The batch path: every allocation's window filled in a few queries (`ensure_windows`). Unknown or
    mismatched allocations raise, so the framework re-runs the batch one event at a time."""
    allocation_ids = {e.payload.allocation_id for e in events}
    rows = fetch("SELECT id, student_id, course_id, status FROM trainer_allocations WHERE id = ANY(%b::bigint[])",
                 [list(allocation_ids)])
    found = {pk: (student, course) for pk, student, course, _ in rows}
    for event in events:
        p = event.payload
        if found.get(p.allocation_id) != (p.student_id, p.course_id):
            raise PermanentError(f"allocation {p.allocation_id} is unknown or does not match its event")
    released = {pk: status for pk, _, _, status in rows if status not in TrainerAllocation.HOLDING_STATUSES}
    for event in events:
        if event.payload.allocation_id in released:
            skip_superseded(STAGE, event, f"allocation {event.payload.allocation_id} is "
                                          f"{released[event.payload.allocation_id]}")
    now = timezone.now()
    filled = fill_windows(sorted(allocation_ids), now, WINDOW_SIZE)
    first_event = {}
    for event in events:
        first_event.setdefault(event.payload.allocation_id, event)
    emit_many(
        [
            Emission(
                SESSIONS_SCHEDULED,
                {"allocation_id": pk, "student_id": found[pk][0], "course_id": found[pk][1],
                 "sessions_created": fill.created, "future_sessions": fill.future},
                correlation_id=first_event[pk].correlation_id,
                causation_id=first_event[pk].event_id,
            )
            for pk, fill in filled.items() if fill.created > 0
        ]
    )


STAGE = Stage(
    name="sessions",
    group_id="session-scheduling-workers",
    topics=("trainer-allocated",),
    handler=handle_trainer_allocated,
    batch_handler=handle_trainer_allocated_batch,
    retry=RetryPolicy(max_attempts=3),
    trace=trace_section,
)
