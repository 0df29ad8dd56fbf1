"""The purchases app's rows of the enrollment trace (workers.trace): the payment, its refunds and the purchase."""
from __future__ import annotations

import uuid

from purchases.models import Payment, Refund, StudentCoursePurchase
from workers.trace import Step, TraceRow, TraceSection, admin_url


def _payment(section: TraceSection, p: Payment) -> None:
    section.steps.append(Step(p.received_at, "api", "Payment received",
                              f"{p.provider_payment_id}: {p.amount} {p.currency}, student {p.student_id}, "
                              f"course {p.course_id}", url=admin_url(p)))
    status = p.get_status_display() + (f" ({p.status_reason})" if p.status_reason else "")
    if p.status_changed_at is not None and p.status != Payment.Status.CONFIRMED:
        section.steps.append(Step(p.status_changed_at, "purchases", f"Payment {p.get_status_display().lower()}",
                                  p.status_reason, url=admin_url(p)))
    section.rows.append(TraceRow("Payment", f"#{p.pk}", f"{p.provider_payment_id}: {p.amount} {p.currency}, "
                                 f"{p.student} \u2192 {p.course}; {status}", admin_url(p)))


def trace_section(correlation_id: uuid.UUID) -> TraceSection:
    payments = list(Payment.objects.filter(correlation_id=correlation_id).select_related("student", "course"))
    purchases = list(StudentCoursePurchase.objects.filter(correlation_id=correlation_id).select_related("course"))
    refunds = list(Refund.objects.filter(payment__correlation_id=correlation_id).order_by("received_at"))
    section = TraceSection()
    for p in payments:
        _payment(section, p)
    for r in refunds:
        section.steps.append(Step(r.received_at, "api", f"Refund received ({r.get_reason_display().lower()})",
                                  f"{r.provider_refund_id}: {r.amount} {r.currency}", url=admin_url(r)))
        section.rows.append(TraceRow("Refund", f"#{r.pk}", f"{r.provider_refund_id}: {r.amount} {r.currency}, "
                                     f"{r.get_reason_display()}", admin_url(r)))
    for pu in purchases:
        section.steps.append(Step(pu.created_at, "purchases", "Purchase created",
                                  f"purchase {pu.pk}, course {pu.course}", url=admin_url(pu)))
        if pu.cancelled_at is not None:
            section.steps.append(Step(pu.cancelled_at, "purchases", "Purchase cancelled",
                                      f"purchase {pu.pk}: {pu.cancel_reason}", url=admin_url(pu)))
        state = "yes" if pu.is_active else f"no (cancelled: {pu.cancel_reason})"
        section.rows.append(TraceRow("Purchase", f"#{pu.pk}", f"{pu.course}, active: {state}", admin_url(pu)))
    if not payments:
        section.rows.insert(0, TraceRow("Payment", None))
    if not purchases:
        section.rows.append(TraceRow("Purchase", None))
    return section
