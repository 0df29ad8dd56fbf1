"""Payments confirmed by the provider, their refunds, and the course purchases they turn into.

A payment's status says what its money bought (README, "The enrollment lifecycle"):
- confirmed:          paid at the course's price; it bought (or is buying) the purchase.
- needs_review:       the amount or currency does not match the course's price; no purchase.
- duplicate:          the student already owned the course when it arrived; no purchase, a refund is due.
- partially_refunded: some money went back; the enrollment stays.
- refunded:           fully refunded or charged back; the enrollment is cancelled.
"""
from django.db import models

from enrollment.models import Course, Student
from workers.uuids import uuid7


class Payment(models.Model):
    """One confirmed payment. `provider_payment_id` UNIQUE makes the webhook idempotent."""

    class Status(models.TextChoices):
        CONFIRMED = "confirmed"
        NEEDS_REVIEW = "needs_review", "needs review"
        DUPLICATE = "duplicate"
        PARTIALLY_REFUNDED = "partially_refunded", "partially refunded"
        REFUNDED = "refunded"

    provider_payment_id = models.CharField(max_length=128, unique=True)
    student = models.ForeignKey(Student, on_delete=models.PROTECT, related_name="payments")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # One per enrollment: every event from this payment on carries it.
    # Time-ordered, as the webhook's (workers.uuids says why): rows made through the ORM (the admin, seeding) too.
    correlation_id = models.UUIDField(default=uuid7, unique=True, editable=False)
    # SHA-256 of the canonical confirmation body: the same provider id with other content is a conflict.
    body_sha256 = models.CharField(max_length=64)
    confirmed_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    # The webhook inserts with raw SQL and leaves these to their database defaults.
    # Indexed only where it is not `confirmed` (see Meta.indexes).
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONFIRMED,
                              db_default=Status.CONFIRMED)
    status_reason = models.CharField(max_length=300, blank=True, default="", db_default="")
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "payments"
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive")]
        # The webhook inserts a payment per request, and every index is a write of its own: only the payments an
        # operator looks for by status (needs review, duplicate, refunded; the admin's filter) are indexed by it,
        # not the confirmed ones that are nearly all of them. (Migration 0004 says what else went.)
        indexes = [models.Index(fields=["status"], name="payments_not_confirmed",
                                condition=~models.Q(status="confirmed"))]

    def __str__(self) -> str:
        return f"payment {self.provider_payment_id}"


class Refund(models.Model):
    """A refund or chargeback the provider reported. It may arrive before its payment's confirmation
    (providers do not guarantee order): then `payment` is empty until the confirmation is processed, and the
    refund is matched by `provider_payment_id`."""

    class Reason(models.TextChoices):
        REQUESTED_BY_CUSTOMER = "requested_by_customer", "requested by customer"
        DUPLICATE = "duplicate"
        FRAUDULENT = "fraudulent"
        CHARGEBACK = "chargeback"

    provider_refund_id = models.CharField(max_length=128, unique=True)
    provider_payment_id = models.CharField(max_length=128, db_index=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds", null=True, blank=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=24, choices=Reason.choices)
    refunded_at = models.DateTimeField()
    body_sha256 = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "refunds"
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return f"refund {self.provider_refund_id}"


class StudentCoursePurchase(models.Model):
    student = models.ForeignKey(Student, on_delete=models.PROTECT, related_name="purchases")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="purchases")
    # One purchase per payment: a re-purchase after a refund is a new payment.
    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="purchase")
    is_active = models.BooleanField(default=True)
    correlation_id = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancel_reason = models.CharField(max_length=24, blank=True, default="", db_default="")

    class Meta:
        db_table = "student_course_purchases"
        constraints = [
            # At most one active purchase per student and course; cancelled ones stay as history.
            models.UniqueConstraint(
                fields=["student", "course"],
                condition=models.Q(is_active=True),
                name="uniq_active_purchase_per_student_course",
            ),
            models.CheckConstraint(
                condition=models.Q(is_active=True) | models.Q(cancelled_at__isnull=False),
                name="inactive_purchase_has_cancelled_at",
            ),
        ]

    def __str__(self) -> str:
        return f"purchase {self.pk}: student {self.student_id} course {self.course_id}"
