"""The purchases stage checks what a payment buys: the course's price and currency, and whether the student
already owns the course. A payment that buys nothing is flagged, never dropped."""
from decimal import Decimal

import pytest
from django.db import transaction

from purchases.models import Payment, StudentCoursePurchase
from purchases.settlement import PAYMENTS_FLAGGED
from purchases.stage import handle_purchase_confirmed, handle_purchase_confirmed_batch
from tests.factories import CourseFactory, PaymentFactory, PurchaseFactory
from tests.purchases.test_handlers import confirmed
from workers.models import OutboxEvent

pytestmark = pytest.mark.django_db
Status = Payment.Status


def flagged(status):
    return PAYMENTS_FLAGGED.labels(status)._value.get()


@pytest.mark.parametrize("amount,currency,reason", [
    ("0.01", "EUR", "paid 0.01 EUR; the course costs 49.00 EUR"),
    ("490.00", "EUR", "paid 490.00 EUR; the course costs 49.00 EUR"),
    ("49.00", "USD", "paid 49.00 USD; the course costs 49.00 EUR"),
])
def test_a_payment_off_the_price_needs_review_and_buys_nothing(django_capture_on_commit_callbacks, amount, currency,
                                                               reason):
    payment = PaymentFactory(amount=Decimal(amount), currency=currency)
    before = flagged(Status.NEEDS_REVIEW)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        handle_purchase_confirmed(confirmed(payment, amount=amount, currency=currency))
    payment.refresh_from_db()
    assert (payment.status, payment.status_reason) == (Status.NEEDS_REVIEW, reason)
    assert payment.status_changed_at is not None
    assert not StudentCoursePurchase.objects.exists() and not OutboxEvent.objects.exists()
    assert flagged(Status.NEEDS_REVIEW) == before + 1


def test_the_price_is_the_courses_own(django_capture_on_commit_callbacks):
    course = CourseFactory(price=Decimal("120.00"), currency="GBP")
    payment = PaymentFactory(course=course, amount=Decimal("120.00"), currency="GBP")
    with transaction.atomic():
        handle_purchase_confirmed(confirmed(payment, amount="120.00", currency="GBP"))
    assert StudentCoursePurchase.objects.get().payment_id == payment.pk


def test_a_payment_for_a_course_the_student_owns_is_a_duplicate(django_capture_on_commit_callbacks):
    owned = PurchaseFactory()
    second = PaymentFactory(student=owned.student, course=owned.course)
    before = flagged(Status.DUPLICATE)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        handle_purchase_confirmed(confirmed(second))
    second.refresh_from_db()
    assert (second.status, second.status_reason) == (
        Status.DUPLICATE, f"the student already owns the course (purchase {owned.pk})")
    assert StudentCoursePurchase.objects.count() == 1 and not OutboxEvent.objects.exists()
    assert flagged(Status.DUPLICATE) == before + 1


def test_in_one_batch_the_first_payment_buys_and_the_second_is_a_duplicate():
    course = CourseFactory()
    first = PaymentFactory(course=course)
    second = PaymentFactory(student=first.student, course=course)
    off_price = PaymentFactory(amount=Decimal("1.00"))
    with transaction.atomic():
        handle_purchase_confirmed_batch([confirmed(first), confirmed(second), confirmed(off_price, amount="1.00")])
    statuses = dict(Payment.objects.values_list("pk", "status"))
    assert statuses == {first.pk: Status.CONFIRMED, second.pk: Status.DUPLICATE, off_price.pk: Status.NEEDS_REVIEW}
    assert list(StudentCoursePurchase.objects.values_list("payment_id", flat=True)) == [first.pk]
    assert Payment.objects.get(pk=second.pk).status_reason == (
        f"the student already owns the course (payment {first.pk}, earlier in the same batch)")


def test_a_redelivered_confirmation_of_a_payment_that_bought_is_done_not_a_duplicate():
    purchase = PurchaseFactory()
    with transaction.atomic():
        handle_purchase_confirmed(confirmed(purchase.payment))
    purchase.payment.refresh_from_db()
    assert purchase.payment.status == Status.CONFIRMED and not OutboxEvent.objects.exists()


def test_re_purchase_after_a_refund_buys_again():
    old = PurchaseFactory(is_active=False)
    payment = PaymentFactory(student=old.student, course=old.course)
    with transaction.atomic():
        handle_purchase_confirmed(confirmed(payment))
    assert StudentCoursePurchase.objects.get(is_active=True).payment_id == payment.pk
