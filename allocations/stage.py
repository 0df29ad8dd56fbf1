"""purchase-created -> allocation API (HTTP) -> trainer-allocated; purchase-cancelled -> release (HTTP).

Entitlement is checked by the API with the purchase locked: a PURCHASE_CREATED whose purchase was cancelled
meanwhile (a refund overtaking it, an old dead letter replayed) is a Superseded skip (410), and one whose
purchase does not exist is a permanent error (422). A PURCHASE_CANCELLED releases the purchase's allocation;
the API cancels its future sessions and emits ALLOCATION_RELEASED in its transaction. Arriving first, before
the purchase's allocation is made, it releases nothing, and the allocation is then refused (410).

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
from enrollment.events import PURCHASE_CANCELLED, TRAINER_ALLOCATED
from workers.envelope import Event
from workers.errors import PermanentError, Superseded, TransientError
from workers.outbox import Emission, emit_many
from workers.stage import RetryPolicy, Stage, skip_superseded


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


def _request(event: Event) -> AllocationRequest:
    p = event.payload
    return AllocationRequest(p.student_id, p.course_id, p.purchase_id, event.correlation_id)


def handle_allocation_event(event: Event) -> None:
    if event.event_type == PURCHASE_CANCELLED:
        get_client().release([event.payload.purchase_id])
        return
    emit_many([_allocated(event, get_client().allocate(_request(event)))])


def handle_allocation_events(events: Sequence[Event]) -> None:
    """The batch's cancellations in one release call, then its allocations in one allocation call. A purchase
    created and cancelled within one batch is released first and then refused (superseded)."""
    cancelled = [e.payload.purchase_id for e in events if e.event_type == PURCHASE_CANCELLED]
    if cancelled:
        get_client().release(cancelled)
    created = [e for e in events if e.event_type != PURCHASE_CANCELLED]
    if created:
        _allocate_batch(created)


def _allocate_batch(events: Sequence[Event]) -> None:
    """One API call for the whole batch. An item whose purchase was cancelled meanwhile is skipped as
    superseded. If any other item failed, raise (TransientError if any failure is transient, else
    PermanentError) so the framework re-runs the events one at a time and treats each failure on its own; the
    items that succeeded are then found again (the API is idempotent)."""
    results = get_client().allocate_many([_request(e) for e in events])
    failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, Superseded)]
    if failures:
        summary = f"{len(failures)} of {len(events)} allocations failed, first: {failures[0]}"
        if any(isinstance(f, TransientError) for f in failures):
            raise TransientError(summary)
        raise PermanentError(summary)
    for event, result in zip(events, results):
        if isinstance(result, Superseded):
            skip_superseded(STAGE, event, str(result))
    emit_many([_allocated(event, result) for event, result in zip(events, results)
               if not isinstance(result, Superseded)])


STAGE = Stage(
    name="allocations",
    group_id="trainer-allocation-workers",
    topics=("purchase-created", "purchase-cancelled"),
    handler=handle_allocation_event,
    batch_handler=handle_allocation_events,
    retry=RetryPolicy(max_attempts=5),
    trace=trace_section,
    on_close=close_client,
)
