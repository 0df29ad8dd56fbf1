"""purchase-created -> allocation API (HTTP) -> trainer-allocated.

The allocation is made by the API in its own transaction; this handler's transaction only writes the outbox row.
TRAINER_ALLOCATED is emitted for an existing allocation too (`created=False`): that is what a redelivery after a
crash between the API call and our commit looks like, and the event was then never emitted. A redelivery after
our commit is skipped by the framework (ProcessedEvent), and downstream stages are idempotent anyway.
"""
from __future__ import annotations

from collections.abc import Sequence

from allocations.client import (
    AllocationRequest,
    AllocationResult,
    close_client,
    get_client,
)
from allocations.trace import trace_section
from enrollment.events import TRAINER_ALLOCATED
from workers.envelope import Event
from workers.errors import PermanentError, TransientError
from workers.outbox import Emission, emit_many
from workers.stage import RetryPolicy, Stage


def _allocated(event: Event, result: AllocationResult) -> Emission:
    return Emission(
        TRAINER_ALLOCATED,
        {
            "allocation_id": result.allocation_id,
            "trainer_id": result.trainer_id,
            "student_id": result.student_id,
            "course_id": result.course_id,
        },
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
    )


def handle_purchase_created(event: Event) -> None:
    p = event.payload
    result = get_client().allocate(p.student_id, p.course_id, event.correlation_id)
    emit_many([_allocated(event, result)])


def handle_purchase_created_batch(events: Sequence[Event]) -> None:
    """One API call for the whole batch. If any item failed, raise (TransientError if any failure is
    transient, else PermanentError) so the framework re-runs the events one at a time and treats each
    failure on its own; the items that succeeded are then found again (the API is idempotent)."""
    results = get_client().allocate_many(
        [AllocationRequest(e.payload.student_id, e.payload.course_id, e.correlation_id) for e in events]
    )
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        summary = f"{len(failures)} of {len(events)} allocations failed, first: {failures[0]}"
        if any(isinstance(f, TransientError) for f in failures):
            raise TransientError(summary)
        raise PermanentError(summary)
    emit_many([_allocated(event, result) for event, result in zip(events, results)])


STAGE = Stage(
    name="allocations",
    group_id="trainer-allocation-workers",
    topics=("purchase-created",),
    handler=handle_purchase_created,
    batch_handler=handle_purchase_created_batch,
    retry=RetryPolicy(max_attempts=5),
    trace=trace_section,
    on_close=close_client,
)
