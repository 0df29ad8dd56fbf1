"""Training sessions: the rolling window of upcoming sessions of an allocation."""
import datetime

from django.contrib.postgres.fields import DateTimeRangeField
from django.db import models

from allocations.models import Trainer, TrainerAllocation

# Every session is at most this long (a check constraint; courses allow 240 minutes): the overlap check reads a
# trainer's bookings that start less than this before a new session (sessions_sched.booking).
MAX_SESSION_LENGTH = datetime.timedelta(hours=24)


class TsTzRange(models.Func):
    """tstzrange(start, end): migration 0003's exclusion constraint, which 0006 replaced by triggers."""

    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class TrainingSession(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    # No index of its own: the unique (allocation, date, time) index starts with allocation_id, and serves the
    # "future sessions of these allocations" queries too (an allocation has a window of about 7 rows, so
    # filtering starts_at on them costs nothing). Every index more is paid on each of the 7 inserts per purchase.
    # Its database constraint is the pair's (below), not one of its own.
    allocation = models.ForeignKey(
        TrainerAllocation, on_delete=models.PROTECT, related_name="sessions", db_index=False, db_constraint=False
    )
    # Denormalised from the allocation so PostgreSQL can refuse to book one trainer twice at once. Its own index is
    # left out: trainer_booked_time (trainer, starts_at) serves a trainer's bookings.
    # One foreign key covers both columns: (allocation_id, trainer_id) references trainer_allocations (id,
    # trainer_id) (migration 0005), so a session's trainer is its allocation's, and each of the 7 inserts per
    # purchase pays one referential check instead of one per column.
    trainer = models.ForeignKey(Trainer, on_delete=models.PROTECT, related_name="sessions", db_index=False,
                                db_constraint=False)
    scheduled_date = models.DateField(help_text="Local date in the course's time zone.")
    scheduled_time = models.TimeField(help_text="Local time in the course's time zone.")
    starts_at = models.DateTimeField(help_text="The same instant in UTC.")
    ends_at = models.DateTimeField(help_text="starts_at + the course's session length.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "training_sessions"
        constraints = [
            models.UniqueConstraint(
                fields=["allocation", "scheduled_date", "scheduled_time"], name="uniq_session_per_allocation_slot"
            ),
            # A trainer is in one session at a time: no two of their bookings overlap, whatever the courses' zones
            # and session lengths. Cancelled sessions free their time. PostgreSQL holds it with statement
            # triggers over trainer_booked_time (migration 0006; why and how: sessions_sched.booking), failing as
            # the exclusion constraint no_overlapping_trainer_sessions did.
            models.CheckConstraint(condition=models.Q(ends_at__gt=models.F("starts_at")),
                                   name="session_ends_after_it_starts"),
            models.CheckConstraint(condition=models.Q(ends_at__lte=models.F("starts_at") + MAX_SESSION_LENGTH),
                                   name="session_at_most_a_day"),
        ]
        indexes = [
            models.Index(fields=["trainer", "starts_at"], condition=~models.Q(status="cancelled"),
                         name="trainer_booked_time"),
        ]

    def __str__(self) -> str:
        return f"session {self.scheduled_date} {self.scheduled_time} (allocation {self.allocation_id})"
