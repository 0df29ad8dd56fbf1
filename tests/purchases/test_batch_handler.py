"""The purchases stage's batch path gives the same results as one event at a time, in a few queries."""
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from enrollment.events import PURCHASE_CREATED
from purchases.models import StudentCoursePurchase
from purchases.stage import handle_purchase_confirmed_batch
from tests.factories import (
    CourseFactory,
    PaymentFactory,
    PurchaseFactory,
    StudentFactory,
)
from tests.purchases.test_handlers import confirmed
from workers.envelope import decode
from workers.errors import PermanentError
from workers.models import OutboxEvent

pytestmark = pytest.mark.django_db


def test_batch_creates_each_purchase_once_and_emits_one_event_each_in_a_few_queries():
    payments = [PaymentFactory() for _ in range(30)]
    student, course = StudentFactory(), CourseFactory()
    twice = [PaymentFactory(student=student, course=course) for _ in range(2)]  # two payments, one course
    already = PaymentFactory()
    PurchaseFactory(payment=already)
    events = [confirmed(p) for p in payments + twice + [already]]
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        handle_purchase_confirmed_batch(events)
    assert len(queries) <= 8  # not one round of queries per event
    assert StudentCoursePurchase.objects.count() == 30 + 1 + 1
    emitted = [decode(bytes(row.value)) for row in OutboxEvent.objects.all()]
    assert len(emitted) == 31 and {e.event_type for e in emitted} == {PURCHASE_CREATED}
    by_payment = {e.payload.payment_id: e for e in emitted}
    assert set(by_payment) == {p.pk for p in payments} | {twice[0].pk}
    source = {e.payload.payment_id: e for e in events}
    for payment_id, event in by_payment.items():
        assert event.correlation_id == source[payment_id].correlation_id
        assert event.causation_id == source[payment_id].event_id


def test_an_unknown_payment_fails_the_batch_so_the_framework_goes_one_by_one():
    good = PaymentFactory()
    bad = confirmed(PaymentFactory(), payment_id=10**12)
    with pytest.raises(PermanentError), transaction.atomic():
        handle_purchase_confirmed_batch([confirmed(good), bad])
    assert not StudentCoursePurchase.objects.exists()
