"""Payments confirmed by the provider, and the course purchases they turn into."""
import uuid

from django.db import models

from enrollment.models import Course, Student


class Payment(models.Model):
    """One confirmed payment. `provider_payment_id` UNIQUE makes the webhook idempotent."""

    provider_payment_id = models.CharField(max_length=128, unique=True)
    student = models.ForeignKey(Student, on_delete=models.PROTECT, related_name="payments")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # One per enrollment: every event from this payment on carries it.
    correlation_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # SHA-256 of the canonical confirmation body: the same provider id with other content is a conflict.
    body_sha256 = models.CharField(max_length=64)
    confirmed_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "payments"
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_amount_positive")]

    def __str__(self) -> str:
        return f"payment {self.provider_payment_id}"


class StudentCoursePurchase(models.Model):
    student = models.ForeignKey(Student, on_delete=models.PROTECT, related_name="purchases")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="purchases")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="purchases")
    is_active = models.BooleanField(default=True)
    correlation_id = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "student_course_purchases"
        constraints = [
            # At most one active purchase per student and course; inactive (refunded, expired) ones may pile up.
            models.UniqueConstraint(
                fields=["student", "course"],
                condition=models.Q(is_active=True),
                name="uniq_active_purchase_per_student_course",
            ),
        ]

    def __str__(self) -> str:
        return f"purchase {self.pk}: student {self.student_id} course {self.course_id}"
