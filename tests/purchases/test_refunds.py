"""POST /api/payments/refunds: answers, full and partial refunds, chargebacks, refunds before their payment,
and the race of a refund with the purchase it cancels."""
import json
import threading
from decimal import Decimal

import msgspec
import pytest
from django.db import connection, transaction
from django.test import Client

from enrollment.events import PURCHASE_CANCELLED, PURCHASE_CONFIRMED
from purchases.models import Payment, Refund, StudentCoursePurchase
from purchases.refunds import RefundNotice, record_refund
from purchases.signing import sign
from purchases.stage import handle_purchase_confirmed
from tests.factories import CourseFactory, PaymentFactory, PurchaseFactory, StudentFactory
from tests.purchases.locks import wait_until_blocked_on_a_lock
from tests.purchases.test_webhook import body_for, post
from workers.envelope import build_event, decode
from workers.models import OutboxEvent

URL = "/api/payments/refunds"
SECRET = "test-webhook-secret"
Status = Payment.Status


@pytest.fixture(autouse=True)
def _secret(settings):
    settings.PAYMENT_WEBHOOK_SECRET = SECRET
    settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS = 300


def notice(payment_id="pay_1", refund_id="re_1", amount="49.00", **overrides):
    return {"provider_refund_id": refund_id, "provider_payment_id": payment_id, "amount": amount,
            "currency": "EUR", "reason": "requested_by_customer", "refunded_at": "2030-01-08T10:00:00+00:00",
            **overrides}


def post_refund(client, body, *, timestamp=None):
    data = json.dumps(body).encode()
    return client.post(URL, data=data, content_type="application/json", headers=sign(data, SECRET, timestamp))


def refund(client, payment, **overrides):
    return post_refund(client, notice(payment.provider_payment_id, **overrides))


def confirm(payment):
    """The purchases stage handles the payment's confirmation, as the framework would."""
    event = build_event(PURCHASE_CONFIRMED, {
        "payment_id": payment.pk, "provider_payment_id": payment.provider_payment_id,
        "student_id": payment.student_id, "course_id": payment.course_id, "amount": str(payment.amount),
        "currency": payment.currency}, correlation_id=payment.correlation_id)
    with transaction.atomic():
        handle_purchase_confirmed(event)


def cancellations():
    return [decode(bytes(row.value)) for row in OutboxEvent.objects.filter(event_type=PURCHASE_CANCELLED)]


@pytest.mark.django_db
class TestRefunds:
    def test_a_full_refund_cancels_the_purchase_and_emits_purchase_cancelled(self, client):
        purchase = PurchaseFactory()
        response = refund(client, purchase.payment)
        assert response.status_code == 202, response.content
        assert response.json() | {"refund_id": 0} == {"refund_id": 0, "status": "accepted",
                                                       "payment_status": "refunded", "enrollment": "cancelled"}
        purchase.refresh_from_db()
        assert not purchase.is_active and purchase.cancelled_at and purchase.cancel_reason == "requested_by_customer"
        purchase.payment.refresh_from_db()
        assert purchase.payment.status == Status.REFUNDED
        [event] = cancellations()
        assert event.correlation_id == purchase.payment.correlation_id
        assert msgspec.structs.asdict(event.payload) == {"purchase_id": purchase.pk, "payment_id": purchase.payment_id,
                                              "student_id": purchase.student_id, "course_id": purchase.course_id,
                                              "reason": "requested_by_customer"}
        assert Refund.objects.get().payment_id == purchase.payment_id

    def test_a_partial_refund_keeps_the_enrollment_until_the_refunds_add_up(self, client):
        purchase = PurchaseFactory()
        first = refund(client, purchase.payment, refund_id="re_a", amount="20.00")
        assert (first.status_code, first.json()["payment_status"], first.json()["enrollment"]) == (
            202, "partially_refunded", "kept")
        purchase.refresh_from_db()
        assert purchase.is_active and not cancellations()
        second = refund(client, purchase.payment, refund_id="re_b", amount="29.00")
        assert (second.json()["payment_status"], second.json()["enrollment"]) == ("refunded", "cancelled")
        assert len(cancellations()) == 1

    def test_any_chargeback_cancels_even_a_partial_one(self, client):
        purchase = PurchaseFactory()
        response = refund(client, purchase.payment, amount="10.00", reason="chargeback")
        assert response.json()["enrollment"] == "cancelled"
        assert [e.payload.reason for e in cancellations()] == ["chargeback"]

    def test_the_same_refund_again_is_200_and_changes_nothing(self, client):
        purchase = PurchaseFactory()
        first = refund(client, purchase.payment, amount="10.00")
        # Written differently (other offset, fewer decimals), it is the same refund.
        again = refund(client, purchase.payment, amount="10", refunded_at="2030-01-08T11:00:00+01:00")
        assert again.status_code == 200 and again.json() == {"refund_id": first.json()["refund_id"],
                                                              "status": "already_accepted"}
        assert Refund.objects.count() == 1

    def test_a_repeated_refund_id_with_other_content_is_409(self, client):
        purchase = PurchaseFactory()
        refund(client, purchase.payment, amount="10.00")
        response = refund(client, purchase.payment, amount="11.00")
        assert response.status_code == 409 and "different content" in response.json()["error"]
        assert Refund.objects.get().amount == Decimal("10.00")

    @pytest.mark.parametrize("amounts", [["49.01"], ["40.00", "10.00"], ["49.00", "1.00"]])
    def test_refunds_over_what_was_paid_are_409_and_not_recorded(self, client, amounts):
        purchase = PurchaseFactory()
        *accepted, over = amounts
        for n, amount in enumerate(accepted):
            assert refund(client, purchase.payment, refund_id=f"re_{n}", amount=amount).status_code == 202
        response = refund(client, purchase.payment, refund_id="re_over", amount=over)
        assert response.status_code == 409, response.content
        assert response.json() == {"error": "refunds would exceed what was paid", "paid": "49.00",
                                   "refunded": str(sum(Decimal(a) for a in accepted) or "0.00"), "requested": over}
        assert Refund.objects.count() == len(accepted)

    def test_another_currency_than_the_payments_is_422(self, client):
        purchase = PurchaseFactory()
        response = refund(client, purchase.payment, currency="USD")
        assert response.status_code == 422
        assert response.json()["error"] == "currency USD does not match the payment's EUR"
        assert not Refund.objects.exists()

    @pytest.mark.parametrize("field,value", [
        ("amount", "-1.00"), ("amount", "0"), ("amount", 49.0), ("amount", "1.234"), ("currency", "eur"),
        ("reason", "changed_my_mind"), ("refunded_at", "2030-01-08T10:00:00"), ("provider_refund_id", "re 1"),
        ("provider_payment_id", ""),
    ])
    def test_an_invalid_body_is_422_with_field_errors(self, client, field, value):
        response = post_refund(client, notice(**{field: value}))
        assert response.status_code == 422 and field in response.json()["errors"], response.content
        assert not Refund.objects.exists()

    def test_an_old_signature_is_401(self, client):
        purchase = PurchaseFactory()
        response = post_refund(client, notice(purchase.payment.provider_payment_id), timestamp=1_000_000_000)
        assert response.status_code == 401 and "tolerance" in response.json()["error"]
        assert not Refund.objects.exists()

    def test_a_refund_of_a_duplicate_payment_leaves_the_owned_purchase_alone(self, client):
        owned = PurchaseFactory()
        duplicate = PaymentFactory(student=owned.student, course=owned.course)
        confirm(duplicate)
        duplicate.refresh_from_db()
        assert duplicate.status == Status.DUPLICATE
        response = refund(client, duplicate, reason="duplicate")
        assert (response.json()["payment_status"], response.json()["enrollment"]) == ("refunded", "none")
        owned.refresh_from_db()
        assert owned.is_active and not cancellations()

    def test_a_refund_before_the_stage_ran_means_the_confirmation_buys_nothing(self, client):
        payment = PaymentFactory()
        assert refund(client, payment).json()["enrollment"] == "none"
        confirm(payment)
        assert not StudentCoursePurchase.objects.exists()
        payment.refresh_from_db()
        assert payment.status == Status.REFUNDED


@pytest.mark.django_db
class TestRefundBeforeItsPayment:
    def test_is_accepted_and_kept_and_the_late_payment_creates_no_purchase(self, client):
        response = post_refund(client, notice("pay_late"))
        assert response.status_code == 202 and response.json()["enrollment"] == "payment_not_seen_yet"
        payment = PaymentFactory(provider_payment_id="pay_late")
        confirm(payment)
        assert not StudentCoursePurchase.objects.exists() and not OutboxEvent.objects.exists()
        payment.refresh_from_db()
        assert payment.status == Status.REFUNDED
        assert Refund.objects.get().payment_id == payment.pk  # linked once the payment is known

    def test_a_partial_one_lets_the_late_payment_buy_and_is_recorded(self, client):
        post_refund(client, notice("pay_late", amount="5.00"))
        payment = PaymentFactory(provider_payment_id="pay_late")
        confirm(payment)
        assert StudentCoursePurchase.objects.get().payment_id == payment.pk
        payment.refresh_from_db()
        assert payment.status == Status.PARTIALLY_REFUNDED

    @pytest.mark.parametrize("body,reason", [
        ({"currency": "USD"}, "refunds in USD received for a payment in EUR"),
        ({"amount": "60.00"}, "refunds of 60.00 exceed the payment of 49.00"),
    ])
    def test_one_that_does_not_fit_the_payment_puts_it_up_for_review(self, client, body, reason):
        post_refund(client, notice("pay_late", **body))
        payment = PaymentFactory(provider_payment_id="pay_late")
        confirm(payment)
        assert not StudentCoursePurchase.objects.exists()
        payment.refresh_from_db()
        assert (payment.status, payment.status_reason) == (Status.NEEDS_REVIEW, reason)


@pytest.mark.django_db(transaction=True)
def test_a_refund_racing_the_purchase_waits_for_it_and_cancels_it():
    """The purchases stage holds the payment locked and has created the purchase, not committed yet. The refund
    waits for the lock, then sees the purchase and cancels it: no purchase survives a full refund."""
    payment = PaymentFactory()
    answers = {}

    def send_refund():
        try:
            answers["refund"] = refund(Client(), payment)
        finally:
            connection.close()

    with transaction.atomic():
        handle_purchase_confirmed(build_event(PURCHASE_CONFIRMED, {
            "payment_id": payment.pk, "provider_payment_id": payment.provider_payment_id,
            "student_id": payment.student_id, "course_id": payment.course_id, "amount": "49.00",
            "currency": "EUR"}, correlation_id=payment.correlation_id))
        thread = threading.Thread(target=send_refund)
        thread.start()
        wait_until_blocked_on_a_lock()
    thread.join(10)
    assert answers["refund"].json()["enrollment"] == "cancelled"
    assert not StudentCoursePurchase.objects.get().is_active
    assert len(cancellations()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_refund_racing_an_unseen_payment_is_found_by_the_stage():
    """The refund holds the payment's advisory lock, before the payment exists. The confirmation's INSERT
    waits for it, so the stage, which runs after the payment is committed, always sees the refund."""
    student, course = StudentFactory(), CourseFactory()
    answers = {}

    def send_confirmation():
        try:
            answers["confirmation"] = post(Client(), body_for(student, course, provider_payment_id="pay_race"))
        finally:
            connection.close()

    with transaction.atomic():
        record_refund(RefundNotice.model_validate(notice("pay_race")), "0" * 64)
        thread = threading.Thread(target=send_confirmation)
        thread.start()
        wait_until_blocked_on_a_lock()
    thread.join(10)
    assert answers["confirmation"].status_code == 202
    confirm(Payment.objects.get(provider_payment_id="pay_race"))
    assert not StudentCoursePurchase.objects.exists()
