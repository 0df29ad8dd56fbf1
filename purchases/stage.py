"""purchase-confirmed -> StudentCoursePurchase -> purchase-created.

A confirmation buys its purchase only when its payment passes the checks of `purchases.settlement.verdict`:
not refunded first, the course's price in the course's currency, a course the student does not own yet.
Otherwise the payment gets the status that says why (needs_review, duplicate, refunded) and nothing is bought.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from enrollment.events import PURCHASE_CREATED
from purchases.models import Payment
from purchases.settlement import Verdict, lock_payments, record_verdicts, verdict
from purchases.trace import trace_section
from workers.envelope import Event
from workers.errors import PermanentError
from workers.outbox import Emission, emit_many
from workers.sql import unnest_insert
from workers.stage import RetryPolicy, Stage

log = logging.getLogger(__name__)

def handle_purchase_confirmed(event: Event) -> None:
    handle_purchase_confirmed_batch([event])


def handle_purchase_confirmed_batch(events: Sequence[Event]) -> None:
    """The whole batch in a handful of queries: payments locked with their price, refunds and the courses
    the student owns in one SELECT, new statuses in one UPDATE, new purchases in one INSERT and their events in one
    outbox INSERT. An event whose payment is unknown or another student's raises PermanentError (for a batch,
    the framework then re-runs it one event at a time, and only that event is dead-lettered)."""
    payments = lock_payments(e.payload.payment_id for e in events)
    for event in events:
        p = event.payload
        found = payments.get(p.payment_id)
        if found is None:
            raise PermanentError(f"unknown payment {p.payment_id}")
        if (found.student_id, found.course_id) != (p.student_id, p.course_id):
            raise PermanentError(f"payment {p.payment_id} is for another student or course than the event says")
    verdicts: dict[int, Verdict] = {}
    buying: dict[tuple[int, int], Event] = {}
    for event in events:  # in offset order: of two payments for one course, the first buys it
        payment = payments[event.payload.payment_id]
        if payment.id in verdicts:
            continue  # the same payment twice in a batch (two events): decided once
        pair = (payment.student_id, payment.course_id)
        owned_by = f"purchase {payment.owned_by}" if payment.owned_by is not None else None
        if pair in buying:
            owned_by = f"payment {buying[pair].payload.payment_id}, earlier in the same batch"
        decided = verdict(payment, owned_by)
        verdicts[payment.id] = decided
        if decided.buys:
            buying[pair] = event
        elif decided.status is None:
            log.info("no purchase: %s", decided.reason or "already bought", extra={"payment_id": payment.id})
    lost = _buy(list(buying.values()))
    for payment_id in lost:  # a concurrent purchase of the same course won the partial unique index
        verdicts[payment_id] = Verdict(False, Payment.Status.DUPLICATE, "the student bought the course concurrently")
    record_verdicts(verdicts, payments)


def _buy(events: list[Event]) -> set[int]:
    """Insert the purchases and emit their PURCHASE_CREATED; returns the payments whose purchase lost the
    race for the partial unique index to another transaction."""
    if not events:
        return set()
    created = unnest_insert(
        "student_course_purchases",
        {"student_id": "bigint", "course_id": "bigint", "payment_id": "bigint", "correlation_id": "uuid"},
        {"student_id": [e.payload.student_id for e in events], "course_id": [e.payload.course_id for e in events],
         "payment_id": [e.payload.payment_id for e in events], "correlation_id": [e.correlation_id for e in events]},
        constants={"is_active": "true", "created_at": "clock_timestamp()"},
        on_conflict="ON CONFLICT DO NOTHING",
        returning="id, payment_id, student_id, course_id",
    )
    by_payment = {e.payload.payment_id: e for e in events}
    emit_many([
        Emission(
            PURCHASE_CREATED,
            {"purchase_id": pk, "payment_id": payment_id, "student_id": student_id, "course_id": course_id},
            correlation_id=by_payment[payment_id].correlation_id,
            causation_id=by_payment[payment_id].event_id,
        )
        for pk, payment_id, student_id, course_id in created
    ])
    return set(by_payment) - {row[1] for row in created}


STAGE = Stage(
    name="purchases",
    group_id="purchase-creation-workers",
    topics=("purchase-confirmed",),
    handler=handle_purchase_confirmed,
    batch_handler=handle_purchase_confirmed_batch,
    retry=RetryPolicy(max_attempts=3),
    trace=trace_section,
)
