"""The enrollment trace shows a cancellation: the refund, the payment's new status, the purchase cancelled and
the allocation released, in time order after the enrollment's own steps."""
import datetime

import pytest
from django.urls import reverse

from purchases.models import Payment, Refund
from tests.factories import AllocationFactory, PurchaseFactory

pytestmark = pytest.mark.django_db
T0 = datetime.datetime(2030, 1, 7, 9, 0, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def test_the_trace_shows_the_cancellation_steps(admin_client):
    purchase = PurchaseFactory(is_active=False, cancel_reason="chargeback")
    payment = purchase.payment
    Payment.objects.filter(pk=payment.pk).update(received_at=at(0), status=Payment.Status.REFUNDED,
                                                 status_reason="charged back 49.00 of 49.00", status_changed_at=at(11))
    type(purchase).objects.filter(pk=purchase.pk).update(created_at=at(1), cancelled_at=at(11))
    allocation = AllocationFactory(correlation_id=payment.correlation_id, student=payment.student,
                                   course=payment.course, purchase=purchase, status="cancelled", released_at=at(12))
    type(allocation).objects.filter(pk=allocation.pk).update(created_at=at(2))
    refund = Refund.objects.create(provider_refund_id="re_1", provider_payment_id=payment.provider_payment_id,
                                   payment=payment, amount="49.00", currency="EUR", reason="chargeback",
                                   refunded_at=at(10), body_sha256="0" * 64)
    Refund.objects.filter(pk=refund.pk).update(received_at=at(10))

    response = admin_client.get(reverse("admin:workers_deadletter_trace", args=[payment.correlation_id]))
    assert response.status_code == 200
    assert [s.title for s in response.context["trace"].steps] == [
        "Payment received", "Purchase created", "Trainer allocated", "Refund received (chargeback)",
        "Payment refunded", "Purchase cancelled", "Allocation cancelled",
    ]
    html = response.content.decode()
    assert "charged back 49.00 of 49.00" in html and "active: no (cancelled: chargeback)" in html
    assert reverse("admin:purchases_refund_change", args=[refund.pk]) in html
