"""POST /api/payments/refunds: the provider's signed refund or chargeback notice.

Answers: 202 a new refund; 200 a repeat of the same `provider_refund_id` with the same content; 409 a repeated
id with other content, or refunds that would exceed what was paid; 422 an invalid body, or a currency other
than the payment's. A refund for a payment not seen yet is accepted and kept (providers do not guarantee
order): the purchases stage finds it when the confirmation comes, and a full one means no purchase.

A full refund, or any chargeback, cancels the enrollment (`purchases.settlement.apply_refunds`); a partial
refund is recorded and keeps it.
"""
from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError

from enrollment.http import field_errors, json_response
from purchases.http import Currency, Money, ProviderBody, ProviderId, UtcTime, error, read_signed_json
from purchases.models import Payment, Refund
from purchases.settlement import RefundTotals, apply_refunds, lock_payment, refund_totals

log = logging.getLogger(__name__)

class RefundNotice(ProviderBody):
    provider_refund_id: ProviderId
    provider_payment_id: ProviderId
    amount: Money
    currency: Currency
    reason: Refund.Reason
    refunded_at: UtcTime


class Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def _answer_existing(existing: Refund, digest: str) -> HttpResponse:
    if existing.body_sha256 != digest:
        return error(409, "provider_refund_id was already received with different content")
    return json_response({"refund_id": existing.pk, "status": "already_accepted"}, status=200)


def _check_against(payment: Payment, notice: RefundNotice) -> None:
    if notice.currency != payment.currency:
        raise Refused(error(422, f"currency {notice.currency} does not match the payment's {payment.currency}"))
    refunded = refund_totals([payment.provider_payment_id]).get(payment.provider_payment_id, RefundTotals()).amount
    if refunded + notice.amount > payment.amount:
        raise Refused(error(409, "refunds would exceed what was paid", paid=str(payment.amount),
                            refunded=str(refunded), requested=str(notice.amount)))


def record_refund(notice: RefundNotice, digest: str) -> HttpResponse:
    """Record the refund and apply it, with the payment locked; the answer for the webhook."""
    with transaction.atomic():
        lock_payment(notice.provider_payment_id)
        existing = Refund.objects.filter(provider_refund_id=notice.provider_refund_id).first()
        if existing is not None:
            return _answer_existing(existing, digest)
        payment = (Payment.objects.select_for_update(no_key=True)
                   .filter(provider_payment_id=notice.provider_payment_id).first())
        if payment is not None:
            _check_against(payment, notice)
        refund = Refund.objects.create(
            provider_refund_id=notice.provider_refund_id, provider_payment_id=notice.provider_payment_id,
            payment=payment, amount=notice.amount, currency=notice.currency, reason=notice.reason,
            refunded_at=notice.refunded_at, body_sha256=digest,
        )
        enrollment, status = apply_refunds(payment, refund) if payment is not None else ("payment_not_seen_yet", None)
    log.info("refund accepted", extra={"refund_id": refund.pk, "payment_status": status, "enrollment": enrollment})
    return json_response({"refund_id": refund.pk, "status": "accepted", "payment_status": status,
                          "enrollment": enrollment}, status=202)


@csrf_exempt
def payment_refund(request: HttpRequest) -> HttpResponse:
    raw, problem = read_signed_json(request, "refund")
    if problem is not None:
        return problem
    try:
        notice = RefundNotice.model_validate(raw)
    except ValidationError as exc:
        return json_response({"errors": field_errors(exc)}, status=422)
    digest = notice.content_sha256()
    try:
        return record_refund(notice, digest)
    except Refused as refused:
        return refused.response
    except IntegrityError:
        # The same refund id for another payment, committed concurrently: answer from its row.
        existing = Refund.objects.filter(provider_refund_id=notice.provider_refund_id).first()
        if existing is None:
            raise
        return _answer_existing(existing, digest)
