"""purchase-confirmed -> StudentCoursePurchase -> purchase-created."""
from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from enrollment.events import PURCHASE_CREATED
from enrollment.models import Course, Student
from purchases.models import Payment, StudentCoursePurchase
from purchases.trace import trace_section
from workers.envelope import Event
from workers.errors import PermanentError
from workers.outbox import Emission, emit, emit_many
from workers.sql import fetch, unnest_insert
from workers.stage import RetryPolicy, Stage

log = logging.getLogger(__name__)

ACTIVE_PURCHASE_CONSTRAINT = "uniq_active_purchase_per_student_course"


def _constraint_name(exc: IntegrityError) -> str | None:
    return getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)


def handle_purchase_confirmed(event: Event) -> None:
    """Create the student's active purchase of the course and emit PURCHASE_CREATED.

    An active purchase that already exists (found, or the partial unique index says so) means this work is
    done: return without error and without a second event.
    """
    p = event.payload
    if not Student.objects.filter(pk=p.student_id).exists():
        raise PermanentError(f"unknown student {p.student_id}")
    if not Course.objects.filter(pk=p.course_id).exists():
        raise PermanentError(f"unknown course {p.course_id}")
    payment = Payment.objects.filter(pk=p.payment_id).only("id", "student_id", "course_id").first()
    if payment is None:
        raise PermanentError(f"unknown payment {p.payment_id}")
    if (payment.student_id, payment.course_id) != (p.student_id, p.course_id):
        raise PermanentError(f"payment {p.payment_id} is for another student or course than the event says")

    if StudentCoursePurchase.objects.filter(student_id=p.student_id, course_id=p.course_id, is_active=True).exists():
        log.info("active purchase exists: already done", extra={"correlation_id": str(event.correlation_id)})
        return
    try:
        with transaction.atomic():  # savepoint: a unique violation must not abort the framework's transaction
            purchase = StudentCoursePurchase.objects.create(
                student_id=p.student_id,
                course_id=p.course_id,
                payment_id=p.payment_id,
                correlation_id=event.correlation_id,
            )
    except IntegrityError as exc:
        if _constraint_name(exc) != ACTIVE_PURCHASE_CONSTRAINT:
            raise
        log.info("concurrent active purchase: already done", extra={"correlation_id": str(event.correlation_id)})
        return
    emit(
        PURCHASE_CREATED,
        {
            "purchase_id": purchase.pk,
            "payment_id": p.payment_id,
            "student_id": p.student_id,
            "course_id": p.course_id,
        },
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
    )


def handle_purchase_confirmed_batch(events: Sequence[Event]) -> None:
    """The same work for a whole batch in a handful of queries: payments checked in one SELECT, existing
    active purchases in one, new purchases in one INSERT (conflicts with the partial unique index ignored),
    their events in one outbox INSERT. Anything odd (unknown or mismatched payment) raises, and the framework
    re-runs the batch one event at a time, where `handle_purchase_confirmed` says precisely what is wrong."""
    payments = {pk: (student, course) for pk, student, course in fetch(
        "SELECT id, student_id, course_id FROM payments WHERE id = ANY(%b::bigint[])",
        [[e.payload.payment_id for e in events]],
    )}
    for event in events:
        p = event.payload
        if payments.get(p.payment_id) != (p.student_id, p.course_id):
            raise PermanentError(f"payment {p.payment_id} is unknown or does not match its event")
    pairs = {(e.payload.student_id, e.payload.course_id) for e in events}
    existing = set(fetch(
        "SELECT student_id, course_id FROM student_course_purchases WHERE is_active"
        " AND (student_id, course_id) IN (SELECT * FROM unnest(%b::bigint[], %b::bigint[]))",
        [[s for s, _ in pairs], [c for _, c in pairs]],
    ))
    todo: dict[tuple[int, int], Event] = {}
    for event in events:  # the first event of a pair wins; a second payment for the same course is "done"
        pair = (event.payload.student_id, event.payload.course_id)
        if pair not in existing and pair not in todo:
            todo[pair] = event
    if not todo:
        return
    created = unnest_insert(
        "student_course_purchases",
        {"student_id": "bigint", "course_id": "bigint", "payment_id": "bigint", "correlation_id": "uuid"},
        {"student_id": [s for s, _ in todo], "course_id": [c for _, c in todo],
         "payment_id": [e.payload.payment_id for e in todo.values()],
         "correlation_id": [e.correlation_id for e in todo.values()]},
        constants={"is_active": "true", "created_at": "clock_timestamp()"},
        on_conflict="ON CONFLICT DO NOTHING",  # a concurrent purchase of the same pair: done
        returning="id, payment_id, student_id, course_id",
    )
    by_payment = {e.payload.payment_id: e for e in todo.values()}
    emit_many(
        [
            Emission(
                PURCHASE_CREATED,
                {"purchase_id": pk, "payment_id": payment_id, "student_id": student_id, "course_id": course_id},
                correlation_id=by_payment[payment_id].correlation_id,
                causation_id=by_payment[payment_id].event_id,
            )
            for pk, payment_id, student_id, course_id in created
        ]
    )


STAGE = Stage(
    name="purchases",
    group_id="purchase-creation-workers",
    topics=("purchase-confirmed",),
    handler=handle_purchase_confirmed,
    batch_handler=handle_purchase_confirmed_batch,
    retry=RetryPolicy(max_attempts=3),
    trace=trace_section,
)
