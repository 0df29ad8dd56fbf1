"""Trainers and the allocation of one trainer to a student for a course."""
import datetime

from django.contrib.postgres.fields import ArrayField
from django.db import models

from enrollment.models import Course, Student

# Start times are picked by allocations.slots, free in UTC across all of a trainer's courses; slot_time(i) is
# the i-th hour from 08:00, what a trainer teaching one course of 60-minute sessions gets.
FIRST_SLOT_HOUR = 8
MAX_TRAINER_CAPACITY = 10
WEEKDAYS = [0, 1, 2, 3, 4]  # Monday..Friday, Python's date.weekday()


def slot_time(slot_index: int) -> datetime.time:
    return datetime.time(FIRST_SLOT_HOUR + slot_index, 0)


class Trainer(models.Model):
    name = models.CharField(max_length=200)
    courses = models.ManyToManyField(Course, related_name="trainers", db_table="trainer_courses")
    # How many students (holding allocations) this trainer can take at once.
    capacity = models.PositiveSmallIntegerField(default=5)
    is_active = models.BooleanField(default=True)
    # How many holding (approved or active) allocations the trainer has now: kept by PostgreSQL triggers on
    # trainer_allocations (migration 0005), whatever writes them. A hint for choosing the least loaded trainers;
    # the bookings read under the trainers' locks decide (allocations.batch, allocations.slots).
    holding = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        db_table = "trainers"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(capacity__lte=MAX_TRAINER_CAPACITY), name="trainer_capacity_at_most_max"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TrainerAllocation(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        ACTIVE = "active"
        ENDED = "ended"
        CANCELLED = "cancelled"

    HOLDING_STATUSES = (Status.APPROVED, Status.ACTIVE)

    student = models.ForeignKey(Student, on_delete=models.PROTECT, related_name="allocations")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="allocations")
    # Indexed with status (Meta.indexes) rather than alone: a trainer's load is a count of its holding rows.
    trainer = models.ForeignKey(Trainer, on_delete=models.PROTECT, related_name="allocations", db_index=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    slot_time = models.TimeField(help_text="Local time of day of every session, in the course's time zone.")
    slot_weekdays = ArrayField(models.PositiveSmallIntegerField(), default=list, help_text="0=Monday .. 4=Friday")
    correlation_id = models.UUIDField(null=True, blank=True, db_index=True)
    # The purchase this allocation serves (by name, so this app imports no other stage app). Empty only for
    # allocations made before purchases were checked.
    purchase = models.ForeignKey("purchases.StudentCoursePurchase", on_delete=models.PROTECT, null=True,
                                 blank=True, related_name="allocations")
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True, help_text="When it stopped holding its slot.")

    class Meta:
        db_table = "trainer_allocations"
        indexes = [
            # allocate_many counts each of a course's trainers' holding allocations. With only an index on
            # trainer_id, a planner without fresh statistics (a table that grew since the last ANALYZE) ANDed it
            # with a full scan of the holding index for every trainer: quadratic in the table, 100+ ms a call.
            models.Index(fields=["trainer", "status"], name="allocation_trainer_status"),
        ]
        constraints = [
            # The key a training session's (allocation, trainer) pair refers to (sessions_sched migration 0005):
            # a session's trainer is its allocation's, checked by PostgreSQL.
            models.UniqueConstraint(fields=["id", "trainer"], name="uniq_allocation_trainer"),
            models.UniqueConstraint(
                fields=["student", "course"],
                condition=models.Q(status__in=["approved", "active"]),
                name="uniq_holding_allocation_per_student_course",
            ),
            # Weekdays only: Monday (0) to Friday (4), and at least one of them.
            models.CheckConstraint(
                condition=models.Q(slot_weekdays__contained_by=WEEKDAYS, slot_weekdays__len__gte=1),
                name="allocation_slot_weekdays_only",
            ),
        ]

    def __str__(self) -> str:
        return f"allocation {self.pk}: trainer {self.trainer_id} -> student {self.student_id} ({self.status})"
