"""purchase-confirmed -> StudentCoursePurchase -> purchase-created."""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from enrollment.events import PURCHASE_CREATED, Event
from enrollment.models import Course, Student
from purchases.models import Payment, StudentCoursePurchase
from workers.errors import PermanentError
from workers.outbox import emit
from workers.stage import Stage

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


STAGE = Stage(
    name="purchases",
    group_id="purchase-creation-workers",
    topics=("purchase-confirmed",),
    handler=handle_purchase_confirmed,
    max_attempts=3,
)
