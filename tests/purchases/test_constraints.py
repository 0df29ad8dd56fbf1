import pytest
from django.db import IntegrityError, connection, transaction

from purchases.models import Payment
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


def _payment_indexes() -> dict[str, str]:
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'payments'")
        return dict(cur.fetchall())


def test_the_webhook_writes_no_index_entry_that_nothing_reads():
    """Every index of `payments` is a write per payment the webhook inserts: no `varchar_pattern_ops` twins (for
    LIKE 'prefix%', which nothing runs), and `status` indexed only where it is not `confirmed`."""
    indexes = _payment_indexes()
    assert not [name for name, definition in indexes.items() if "pattern_ops" in definition], indexes
    status = [definition for definition in indexes.values() if "(status)" in definition]
    assert status == ["CREATE INDEX payments_not_confirmed ON public.payments USING btree (status) "
                      "WHERE (NOT ((status)::text = 'confirmed'::text))"], indexes


def test_an_operator_finds_the_payments_to_review_by_their_status_index():
    """The admin's filter (status = needs_review) is served by the partial index among thousands of confirmed
    payments: PostgreSQL proves that needs_review is not confirmed."""
    student, course = StudentFactory(), CourseFactory()
    PaymentFactory.create_batch(3, student=student, course=course, status=Payment.Status.NEEDS_REVIEW)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO payments (provider_payment_id, student_id, course_id, amount, currency, correlation_id,"
            " body_sha256, confirmed_at, received_at) SELECT 'bulk_' || n, %s, %s, 49, 'EUR', gen_random_uuid(),"
            " '', now(), now() FROM generate_series(1, 5000) AS n", [student.pk, course.pk])
        cur.execute("ANALYZE payments")
    query = Payment.objects.filter(status=Payment.Status.NEEDS_REVIEW)
    assert "payments_not_confirmed" in query.explain()
    assert query.count() == 3
