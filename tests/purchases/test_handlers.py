"""handle_purchase_confirmed, called directly inside a transaction like the framework does."""
import threading
import uuid

import msgspec
import pytest
from django.db import connection, transaction

from enrollment.events import PURCHASE_CONFIRMED, PURCHASE_CREATED
from purchases.models import StudentCoursePurchase
from purchases.stage import STAGE, handle_purchase_confirmed
from tests.factories import PaymentFactory, PurchaseFactory, StudentFactory
from tests.purchases.locks import wait_until_blocked_on_a_lock
from workers.envelope import build_event, decode
from workers.errors import PermanentError
from workers.models import OutboxEvent


def confirmed(payment, **overrides):
    payload = {
        "payment_id": payment.pk,
        "provider_payment_id": payment.provider_payment_id,
        "student_id": payment.student_id,
        "course_id": payment.course_id,
        "amount": "49.00",
        "currency": "EUR",
        **overrides,
    }
    return build_event(PURCHASE_CONFIRMED, payload, correlation_id=payment.correlation_id)


def handle(event):
    with transaction.atomic():
        handle_purchase_confirmed(event)


@pytest.mark.django_db
class TestHandlePurchaseConfirmed:
    def test_creates_the_purchase_and_emits_purchase_created(self):
        payment = PaymentFactory()
        event = confirmed(payment)
        handle(event)
        purchase = StudentCoursePurchase.objects.get()
        assert (purchase.student_id, purchase.course_id, purchase.payment_id, purchase.is_active) == (
            payment.student_id, payment.course_id, payment.pk, True)
        assert purchase.correlation_id == payment.correlation_id
        row = OutboxEvent.objects.get()
        emitted = decode(bytes(row.value))
        assert row.event_type == emitted.event_type == PURCHASE_CREATED
        assert row.key == str(payment.student_id) and row.correlation_id == payment.correlation_id
        assert emitted.correlation_id == event.correlation_id and emitted.causation_id == event.event_id
        assert msgspec.structs.asdict(emitted.payload) == {
            "purchase_id": purchase.pk, "payment_id": payment.pk,
            "student_id": payment.student_id, "course_id": payment.course_id,
        }

    def test_existing_active_purchase_is_already_done_without_a_second_event(self):
        purchase = PurchaseFactory()
        handle(confirmed(purchase.payment))
        assert StudentCoursePurchase.objects.count() == 1
        assert not OutboxEvent.objects.exists()

    def test_the_same_event_twice_creates_one_purchase_and_one_event(self):
        event = confirmed(PaymentFactory())
        handle(event)
        handle(event)
        assert StudentCoursePurchase.objects.count() == 1 and OutboxEvent.objects.count() == 1

    def test_an_inactive_earlier_purchase_does_not_count(self):
        old = PurchaseFactory(is_active=False)
        payment = PaymentFactory(student=old.student, course=old.course)
        handle(confirmed(payment))
        assert StudentCoursePurchase.objects.filter(is_active=True).get().payment_id == payment.pk
        assert OutboxEvent.objects.filter(event_type=PURCHASE_CREATED).count() == 1

    @pytest.mark.parametrize(
        "override,reason",
        [({"student_id": 10**9}, "another student or course"), ({"course_id": 10**9}, "another student or course"),
         ({"payment_id": 10**9}, "unknown payment")],
    )
    def test_unknown_references_are_permanent_errors(self, override, reason):
        event = confirmed(PaymentFactory(), **override)
        with pytest.raises(PermanentError, match=reason):
            handle(event)
        assert not StudentCoursePurchase.objects.exists() and not OutboxEvent.objects.exists()

    def test_payment_of_another_student_is_a_permanent_error(self):
        payment = PaymentFactory()
        with pytest.raises(PermanentError, match="another student"):
            handle(confirmed(payment, student_id=StudentFactory().pk))

    def test_stage(self):
        assert (STAGE.name, STAGE.group_id, STAGE.topics, STAGE.retry.max_attempts) == (
            "purchases", "purchase-creation-workers", ("purchase-confirmed",), 3)
        assert STAGE.handler is handle_purchase_confirmed


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_purchase_hitting_the_unique_index_flags_a_duplicate_and_keeps_the_transaction_usable():
    """The handler does not see the other transaction's purchase yet, inserts, waits on the partial unique
    index, and gets the conflict when the other commits: the payment is a duplicate, nothing emitted, outer
    transaction intact."""
    payment = PaymentFactory()
    other = PaymentFactory(student=payment.student, course=payment.course)
    outcome = {}

    def worker():
        try:
            with transaction.atomic():
                handle_purchase_confirmed(confirmed(payment))
                outcome["outbox_in_tx"] = OutboxEvent.objects.count()  # would fail if the tx were aborted
        except Exception as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    with transaction.atomic():
        StudentCoursePurchase.objects.create(
            student=other.student, course=other.course, payment=other, correlation_id=uuid.uuid4()
        )
        thread = threading.Thread(target=worker)
        thread.start()
        wait_until_blocked_on_a_lock()
    thread.join(10)
    assert "error" not in outcome, outcome
    assert outcome["outbox_in_tx"] == 0
    assert StudentCoursePurchase.objects.get().payment_id == other.pk
    assert not OutboxEvent.objects.exists()
    payment.refresh_from_db()
    assert (payment.status, payment.status_reason) == ("duplicate", "the student bought the course concurrently")
