import pytest
from django.db import IntegrityError, transaction

from tests.factories import (
    CourseFactory,
    PaymentFactory,
    PurchaseFactory,
    StudentFactory,
)

pytestmark = pytest.mark.django_db


def test_provider_payment_id_is_unique():
    payment = PaymentFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        PaymentFactory(provider_payment_id=payment.provider_payment_id)


def test_second_active_purchase_for_same_student_and_course_is_rejected():
    student, course = StudentFactory(), CourseFactory()
    PurchaseFactory(payment=PaymentFactory(student=student, course=course))
    with pytest.raises(IntegrityError, match="uniq_active_purchase_per_student_course"), transaction.atomic():
        PurchaseFactory(payment=PaymentFactory(student=student, course=course))


def test_inactive_purchases_do_not_block_a_new_active_one():
    student, course = StudentFactory(), CourseFactory()
    PurchaseFactory(payment=PaymentFactory(student=student, course=course), is_active=False)
    PurchaseFactory(payment=PaymentFactory(student=student, course=course), is_active=False)
    PurchaseFactory(payment=PaymentFactory(student=student, course=course))  # the one active purchase
    assert student.purchases.filter(is_active=True).count() == 1


def test_same_student_may_hold_active_purchases_of_different_courses():
    student = StudentFactory()
    PurchaseFactory(payment=PaymentFactory(student=student))
    PurchaseFactory(payment=PaymentFactory(student=student))
    assert student.purchases.filter(is_active=True).count() == 2


def test_payment_amount_must_be_positive():
    with pytest.raises(IntegrityError, match="payment_amount_positive"), transaction.atomic():
        PaymentFactory(amount=0)
