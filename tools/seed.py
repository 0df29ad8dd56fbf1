"""Seed data for the demo and the benchmarks: courses, trainers with room for everyone, students."""
from __future__ import annotations

import uuid

from allocations.models import MAX_TRAINER_CAPACITY, Trainer
from enrollment.models import Course, Student


def seed_catalog(payments: int, courses: int) -> list[tuple[int, int]]:
    """Courses in several time zones, trainers (capacity 10) for all with 20% spare, students. Each trainer
    teaches the courses of one time zone: a trainer's hourly slots are local times, and two courses in different
    zones could put two of its sessions at the same instant (the scheduler then has to look further ahead).
    Returns (student_id, course_id) for each payment to send."""
    zones = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC"]
    made = Course.objects.bulk_create(
        [Course(title=f"Course {i + 1}", time_zone=zones[i % len(zones)], price="49.00", currency="EUR")
         for i in range(courses)]
    )
    per_course = -(-payments // courses)  # ceiling divisions: room for everyone, plus 20%
    trainers_per_course = max(1, -(-per_course * 12 // (10 * MAX_TRAINER_CAPACITY)))
    trainers = Trainer.objects.bulk_create(
        [Trainer(name=f"Trainer {i + 1}", capacity=MAX_TRAINER_CAPACITY) for i in range(courses * trainers_per_course)]
    )
    Trainer.courses.through.objects.bulk_create(
        [Trainer.courses.through(trainer_id=t.pk, course_id=made[i // trainers_per_course % len(made)].pk)
         for i, t in enumerate(trainers)]
    )
    run = uuid.uuid4().hex[:8]  # several seedings may share a database (benchmarks)
    students = Student.objects.bulk_create(
        [Student(name=f"Student {i + 1}", email=f"student{i + 1}-{run}@demo.test") for i in range(payments)],
        batch_size=2000,
    )
    return [(s.pk, made[i % len(made)].pk) for i, s in enumerate(students)]


def seed_payments(pairs: list[tuple[int, int]], prefix: str = "seed") -> list:
    """One confirmed Payment per (student, course), as the webhook would have stored it."""
    from decimal import Decimal

    from django.utils import timezone

    from purchases.models import Payment

    now = timezone.now()
    return Payment.objects.bulk_create(
        [Payment(provider_payment_id=f"{prefix}_{uuid.uuid4().hex}", student_id=s, course_id=c,
                 amount=Decimal("49.00"), currency="EUR", body_sha256="0" * 64, confirmed_at=now)
         for s, c in pairs],
        batch_size=2000,
    )


def purchase_confirmed(payment):
    """The PURCHASE_CONFIRMED event the webhook emits for a payment."""
    from enrollment.events import PURCHASE_CONFIRMED
    from workers.envelope import build_event

    return build_event(
        PURCHASE_CONFIRMED,
        {"payment_id": payment.pk, "provider_payment_id": payment.provider_payment_id,
         "student_id": payment.student_id, "course_id": payment.course_id, "amount": "49.00", "currency": "EUR"},
        correlation_id=payment.correlation_id,
    )


def seed_purchases(payments: list) -> list:
    """The active purchase each payment bought, as the purchases stage would have made it."""
    from purchases.models import StudentCoursePurchase

    return StudentCoursePurchase.objects.bulk_create(
        [StudentCoursePurchase(student_id=p.student_id, course_id=p.course_id, payment_id=p.pk,
                               correlation_id=p.correlation_id) for p in payments],
        batch_size=2000,
    )
