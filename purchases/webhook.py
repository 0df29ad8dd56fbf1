"""POST /api/payments/confirmations: the payment provider's signed confirmation becomes a Payment row and a
PURCHASE_CONFIRMED event (outbox row) in one transaction, answered 202 without waiting for the pipeline.

Idempotency: `provider_payment_id` is UNIQUE. A repeat with the same content (same SHA-256 of the canonical
validated body) answers 200 with the first answer's ids and emits nothing; the same id with other content is a
409. Two identical requests racing each other: the loser's INSERT hits the unique index, waits for the winner's
commit, and is answered from the winner's row.
"""
from __future__ import annotations

import logging
import uuid
from typing import Annotated, NamedTuple

from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import Field, ValidationError

from enrollment.events import PURCHASE_CONFIRMED
from enrollment.http import field_errors, json_response
from purchases.http import (
    Currency,
    Money,
    ProviderBody,
    ProviderId,
    UtcTime,
    error,
    read_signed_json,
)
from purchases.models import Payment
from purchases.settlement import PAYMENT_LOCK_SUBQUERY
from workers.outbox import Emission, emit_when
from workers.sql import SequenceIds
from workers.uuids import uuid7

log = logging.getLogger(__name__)


class PaymentConfirmation(ProviderBody):
    """The provider's confirmation body."""

    provider_payment_id: ProviderId
    student_id: Annotated[int, Field(strict=True, gt=0, lt=2**63)]
    course_id: Annotated[int, Field(strict=True, gt=0, lt=2**63)]
    amount: Money
    currency: Currency
    confirmed_at: UtcTime


def _answer_existing(existing: Payment, digest: str) -> HttpResponse:
    if existing.body_sha256 != digest:
        return error(409, "provider_payment_id was already confirmed with different content")
    return json_response(
        {"payment_id": existing.pk, "correlation_id": str(existing.correlation_id), "status": "already_accepted"},
        status=200,
    )


# The hot path is one round trip (`emit_when`): a statement that reads the facts the answer depends on (a payment
# with this provider id, the student, the course), inserts the payment only when they allow it, and inserts its
# event's outbox row from that INSERT. The event names the payment, so its id is drawn before the statement, from a
# block of ids this process drew from the sequence (`SequenceIds`): ids are unique, not in arrival order
# (received_at is), and a repeat or a refused request leaves a gap, which nothing relies on.
FACTS_SQL = (
    "SELECT (SELECT id FROM payments WHERE provider_payment_id = %s) AS existing,"
    " EXISTS (SELECT 1 FROM students WHERE id = %s) AS student_known,"
    " EXISTS (SELECT 1 FROM courses WHERE id = %s) AS course_known"
)
# The payment's advisory lock (purchases.settlement) is held from the INSERT to the commit, so a refund that
# arrives at the same time either sees this payment or is seen by the purchases stage.
INSERT_PAYMENT_SQL = (
    "INSERT INTO payments (id, provider_payment_id, student_id, course_id, amount, currency, correlation_id,"
    " body_sha256, confirmed_at, received_at) SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp()"
    f" FROM facts, {PAYMENT_LOCK_SUBQUERY}"
    " WHERE facts.existing IS NULL AND facts.student_known AND facts.course_known RETURNING id"
)
PAYMENT_IDS = SequenceIds("payments")


class Attempt(NamedTuple):
    """What the one statement found and did."""

    existing_id: int | None  # a payment with this provider id was there already: nothing inserted
    student_known: bool
    course_known: bool
    payment_id: int  # the new payment's id, if it was inserted
    correlation_id: uuid.UUID | None  # None when nothing was inserted


def _accept(confirmation: PaymentConfirmation, digest: str) -> Attempt:
    """Insert the payment and emit PURCHASE_CONFIRMED in one statement, when no payment has this provider id yet
    and the student and the course exist."""
    payment_id, correlation_id = PAYMENT_IDS.take(), uuid7()
    (existing_id, student_known, course_known), event = emit_when(
        FACTS_SQL,
        [confirmation.provider_payment_id, confirmation.student_id, confirmation.course_id],
        INSERT_PAYMENT_SQL,
        [payment_id, confirmation.provider_payment_id, confirmation.student_id, confirmation.course_id,
         confirmation.amount, confirmation.currency, correlation_id, digest, confirmation.confirmed_at,
         confirmation.provider_payment_id],
        Emission(
            PURCHASE_CONFIRMED,
            {
                "payment_id": payment_id,
                "provider_payment_id": confirmation.provider_payment_id,
                "student_id": confirmation.student_id,
                "course_id": confirmation.course_id,
                "amount": str(confirmation.amount),
                "currency": confirmation.currency,
            },
            correlation_id=correlation_id,
        ),
    )
    return Attempt(existing_id, student_known, course_known, payment_id, correlation_id if event else None)


@csrf_exempt
def payment_confirmation(request: HttpRequest) -> HttpResponse:
    raw, problem = read_signed_json(request, "confirmation")
    if problem is not None:
        return problem
    try:
        confirmation = PaymentConfirmation.model_validate(raw)
    except ValidationError as exc:
        return json_response({"errors": field_errors(exc)}, status=400)
    digest = confirmation.content_sha256()

    try:
        attempt = _accept(confirmation, digest)
    except IntegrityError:
        # Most likely a concurrent request with the same provider id committed first: answer from its row.
        existing = Payment.objects.filter(provider_payment_id=confirmation.provider_payment_id).first()
        if existing is None:
            raise
        return _answer_existing(existing, digest)
    if attempt.existing_id is not None:
        return _answer_existing(Payment.objects.get(pk=attempt.existing_id), digest)
    if not attempt.student_known:
        return error(422, "unknown student", student_id=confirmation.student_id)
    if not attempt.course_known:
        return error(422, "unknown course", course_id=confirmation.course_id)

    payment_id, correlation_id = attempt.payment_id, str(attempt.correlation_id)
    log.info("payment accepted", extra={"payment_id": payment_id, "correlation_id": correlation_id})
    return json_response({"payment_id": payment_id, "correlation_id": correlation_id, "status": "accepted"},
                         status=202)
