"""What a payment's money buys, and what refunds take back: the decisions of the purchases stage and of the
refund webhook, in one place.

Both run with the payment locked, so a refund and the purchase it may cancel never cross:
- the confirmation webhook holds the payment's advisory lock from its INSERT to its commit, and the refund
  webhook takes the same lock first: a refund either sees the payment, or is committed before the payment
  exists and then found by the purchases stage (refunds are matched by `provider_payment_id`);
- the purchases stage and the refund webhook lock the payment row (FOR NO KEY UPDATE) before they read its
  status and refunds: either the purchase exists and the refund cancels it, or the refund is recorded first
  and the purchase is never created.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import msgspec
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter

from enrollment.events import PURCHASE_CANCELLED
from purchases.models import Payment, Refund, StudentCoursePurchase
from workers.outbox import emit
from workers.sql import fetch

log = logging.getLogger(__name__)

Status = Payment.Status
# The payment's advisory lock, as a FROM item (the confirmation's INSERT ... SELECT) and as a statement.
PAYMENT_LOCK_SUBQUERY = "(SELECT pg_advisory_xact_lock(hashtextextended('payment:' || %s, 0))) AS payment_lock"
PAYMENT_LOCK_SQL = f"SELECT 1 FROM {PAYMENT_LOCK_SUBQUERY}"
# Statuses whose payment may still buy its purchase (a partial refund keeps the enrollment).
BUYING = (Status.CONFIRMED, Status.PARTIALLY_REFUNDED)

PAYMENTS_FLAGGED = Counter("pipeline_payments_flagged_total",
                           "Payments that bought nothing: needs_review (amount or currency) or duplicate", ["status"])
REFUNDS = Counter("pipeline_refunds_total", "Refunds accepted, by what they did to the enrollment", ["outcome"])


def lock_payment(provider_payment_id: str) -> None:
    fetch(PAYMENT_LOCK_SQL, [provider_payment_id])


@dataclass(frozen=True)
class RefundTotals:
    amount: Decimal = Decimal("0.00")
    currencies: frozenset[str] = frozenset()
    chargeback: bool = False
    unlinked: bool = False  # some arrived before the confirmation and are not linked to the payment yet


REFUND_TOTALS_SQL = """
SELECT provider_payment_id, sum(amount), array_agg(DISTINCT currency), bool_or(reason = 'chargeback'),
       bool_or(payment_id IS NULL)
FROM refunds WHERE provider_payment_id = ANY(%b::text[]) GROUP BY provider_payment_id
"""
LINK_REFUNDS_SQL = """
UPDATE refunds r SET payment_id = p.id FROM payments p
WHERE r.payment_id IS NULL AND r.provider_payment_id = p.provider_payment_id AND p.id = ANY(%b::bigint[])
"""
SET_STATUS_SQL = """
UPDATE payments p SET status = s.status, status_reason = s.reason, status_changed_at = clock_timestamp()
FROM unnest(%b::bigint[], %b::text[], %b::text[]) AS s(id, status, reason) WHERE p.id = s.id
"""


def refund_totals(provider_payment_ids: Iterable[str]) -> dict[str, RefundTotals]:
    return {ppid: RefundTotals(total, frozenset(currencies), chargeback, unlinked)
            for ppid, total, currencies, chargeback, unlinked in fetch(REFUND_TOTALS_SQL, [list(provider_payment_ids)])}


class Verdict(msgspec.Struct, frozen=True):
    """What a confirmed payment gets: a purchase or not, and the status to record (None: unchanged)."""

    buys: bool
    status: str | None = None
    reason: str = ""


def verdict(payment: PaymentFacts, owned_by: str | None) -> Verdict:
    """The checks of a confirmation, in order: already decided, refunds that came first, the price, ownership.
    `owned_by` names what already holds the course for the student ("purchase 12"), if anything."""
    if payment.purchase_id is not None:
        return Verdict(False)  # it bought its purchase already: done
    if payment.status not in BUYING:
        return Verdict(False, reason=f"payment is {payment.status}")
    partial, refunds = None, payment.refunds
    if refunds is not None:
        if refunds.currencies - {payment.currency}:
            return Verdict(False, Status.NEEDS_REVIEW, f"refunds in {','.join(sorted(refunds.currencies))} "
                                                       f"received for a payment in {payment.currency}")
        if refunds.amount > payment.amount:
            return Verdict(False, Status.NEEDS_REVIEW,
                           f"refunds of {refunds.amount} exceed the payment of {payment.amount}")
        if refunds.chargeback or refunds.amount >= payment.amount:
            return Verdict(False, Status.REFUNDED, "refunded before the confirmation was processed")
        partial = Status.PARTIALLY_REFUNDED
    if (payment.amount, payment.currency) != (payment.price, payment.course_currency):
        return Verdict(False, Status.NEEDS_REVIEW, f"paid {payment.amount} {payment.currency}; the course costs "
                                                   f"{payment.price} {payment.course_currency}")
    if owned_by is not None:
        return Verdict(False, Status.DUPLICATE, f"the student already owns the course ({owned_by})")
    return Verdict(True, partial, f"refunded {refunds.amount} before the confirmation" if partial else "")


class PaymentFacts(msgspec.Struct, frozen=True):
    """A payment as the purchases stage decides on it, with its course's price, its refunds and what the
    student already holds of the course. Verdict and PaymentFacts are frozen msgspec Structs, not frozen
    dataclasses: the stage makes one of each per event, and a frozen dataclass of 12 fields cost 1.8 us to make
    against 0.1."""

    id: int
    provider_payment_id: str
    student_id: int
    course_id: int
    amount: Decimal
    currency: str
    status: str
    price: Decimal
    course_currency: str
    purchase_id: int | None  # the purchase this payment bought, if any
    owned_by: int | None  # the student's active purchase of the course, if any
    refunds: RefundTotals | None


# One round trip for everything the checks need, with the payments locked in id order (no deadlock between
# batches).
LOCK_PAYMENTS_SQL = """
SELECT p.id, p.provider_payment_id, p.student_id, p.course_id, p.amount, p.currency, p.status, c.price, c.currency,
       (SELECT pu.id FROM student_course_purchases pu WHERE pu.payment_id = p.id),
       (SELECT pu.id FROM student_course_purchases pu
        WHERE pu.student_id = p.student_id AND pu.course_id = p.course_id AND pu.is_active),
       rf.n, rf.total, rf.currencies, rf.chargeback, rf.unlinked
FROM payments p JOIN courses c ON c.id = p.course_id
LEFT JOIN LATERAL (
    SELECT count(*) AS n, sum(amount) AS total, array_agg(DISTINCT currency) AS currencies,
           bool_or(reason = 'chargeback') AS chargeback, bool_or(payment_id IS NULL) AS unlinked
    FROM refunds r WHERE r.provider_payment_id = p.provider_payment_id
) rf ON true
WHERE p.id = ANY(%b::bigint[]) ORDER BY p.id FOR NO KEY UPDATE OF p
"""


def lock_payments(payment_ids: Iterable[int]) -> dict[int, PaymentFacts]:
    facts = {}
    for *row, n, total, currencies, chargeback, unlinked in fetch(LOCK_PAYMENTS_SQL, [sorted(set(payment_ids))]):
        refunds = RefundTotals(total, frozenset(currencies), chargeback, unlinked) if n else None
        facts[row[0]] = PaymentFacts(*row, refunds=refunds)
    return facts


def record_verdicts(verdicts: dict[int, Verdict], payments: dict[int, PaymentFacts]) -> None:
    """Write the new statuses (one UPDATE), link refunds that came first, count flagged payments at commit."""
    changed = {pk: v for pk, v in verdicts.items() if v.status is not None}
    if changed:
        fetch(SET_STATUS_SQL, [list(changed), [v.status for v in changed.values()],
                               [v.reason for v in changed.values()]])
    early = [pk for pk, p in payments.items() if p.refunds is not None and p.refunds.unlinked]
    if early:
        fetch(LINK_REFUNDS_SQL, [early])
    for pk, v in changed.items():
        log.info("payment %s: %s (%s)", pk, v.status, v.reason, extra={"payment_id": pk})
        if v.status in (Status.NEEDS_REVIEW, Status.DUPLICATE):
            transaction.on_commit(PAYMENTS_FLAGGED.labels(v.status).inc)


def apply_refunds(payment: Payment, refund: Refund) -> tuple[str, str]:
    """After `refund` was recorded (payment locked): the payment's new status, and a full refund or any
    chargeback cancels its purchase and emits PURCHASE_CANCELLED. Returns what happened to the enrollment
    ("cancelled", "kept", "none": no purchase, as not bought yet, flagged, or cancelled before) and the
    payment's status."""
    totals = refund_totals([payment.provider_payment_id]).get(payment.provider_payment_id, RefundTotals())
    Refund.objects.filter(provider_payment_id=payment.provider_payment_id, payment__isnull=True).update(payment=payment)
    cancels = totals.chargeback or totals.amount >= payment.amount
    was = payment.status
    if cancels:
        status = Status.REFUNDED
    elif was in BUYING:
        status = Status.PARTIALLY_REFUNDED
    else:
        status = was  # a flagged payment stays flagged until it is refunded in full
    if status != was:
        note = f"{'charged back' if totals.chargeback else 'refunded'} {totals.amount} of {payment.amount}"
        Payment.objects.filter(pk=payment.pk).update(status=status, status_reason=note,
                                                     status_changed_at=timezone.now())
    outcome = "kept" if was in BUYING and not cancels else "none"
    if cancels and was in BUYING:
        reason = Refund.Reason.CHARGEBACK if totals.chargeback else refund.reason
        outcome = "cancelled" if cancel_purchase(payment, reason) else "none"
    transaction.on_commit(REFUNDS.labels(outcome).inc)
    return outcome, status


def cancel_purchase(payment: Payment, reason: str) -> bool:
    """Deactivate the payment's active purchase, if it has one, and emit PURCHASE_CANCELLED."""
    purchase = StudentCoursePurchase.objects.select_for_update().filter(payment=payment, is_active=True).first()
    if purchase is None:
        return False  # not bought yet: the purchases stage will see the payment refunded and create nothing
    purchase.is_active, purchase.cancelled_at, purchase.cancel_reason = False, timezone.now(), reason
    purchase.save(update_fields=["is_active", "cancelled_at", "cancel_reason"])
    emit(
        PURCHASE_CANCELLED,
        {"purchase_id": purchase.pk, "payment_id": payment.pk, "student_id": purchase.student_id,
         "course_id": purchase.course_id, "reason": reason},
        correlation_id=payment.correlation_id,
    )
    return True
