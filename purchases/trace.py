"""The purchases app's rows of the enrollment trace (workers.trace): the payment and the purchase."""
from __future__ import annotations

import uuid

from purchases.models import Payment, StudentCoursePurchase
from workers.trace import Step, TraceRow, TraceSection, admin_url


def trace_section(correlation_id: uuid.UUID) -> TraceSection:
    payments = list(Payment.objects.filter(correlation_id=correlation_id).select_related("student", "course"))
    purchases = list(StudentCoursePurchase.objects.filter(correlation_id=correlation_id).select_related("course"))
    section = TraceSection()
    for p in payments:
        section.steps.append(Step(p.received_at, "api", "Payment received",
                                  f"{p.provider_payment_id}: {p.amount} {p.currency}, student {p.student_id}, "
                                  f"course {p.course_id}", url=admin_url(p)))
        section.rows.append(TraceRow("Payment", f"#{p.pk}", f"{p.provider_payment_id}: {p.amount} {p.currency}, "
                                     f"{p.student} \u2192 {p.course}", admin_url(p)))
    for pu in purchases:
        section.steps.append(Step(pu.created_at, "purchases", "Purchase created",
                                  f"purchase {pu.pk}, course {pu.course}, active: {pu.is_active}",
                                  url=admin_url(pu)))
        section.rows.append(TraceRow("Purchase", f"#{pu.pk}", f"{pu.course}, active: {'yes' if pu.is_active else 'no'}",
                                     admin_url(pu)))
    if not payments:
        section.rows.insert(0, TraceRow("Payment", None))
    if not purchases:
        section.rows.append(TraceRow("Purchase", None))
    return section
