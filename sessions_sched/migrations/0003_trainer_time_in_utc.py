"""Trainer time in UTC: every session gets its end (start + the course's session length), and PostgreSQL
refuses two overlapping bookings of one trainer (an exclusion constraint over tstzrange, with btree_gist), in
place of the old "not the same start instant" unique constraint."""
import django.contrib.postgres.constraints
import django.contrib.postgres.fields.ranges
import django.db.models.expressions
from django.contrib.postgres.operations import BtreeGistExtension
from django.db import migrations, models

import sessions_sched.models


class Migration(migrations.Migration):

    dependencies = [
        ("sessions_sched", "0002_drop_redundant_allocation_index"),
        ("enrollment", "0001_initial"),
    ]

    operations = [
        BtreeGistExtension(),
        migrations.AddField(
            model_name="trainingsession",
            name="ends_at",
            field=models.DateTimeField(null=True, help_text="starts_at + the course's session length."),
        ),
        migrations.RunSQL(
            "UPDATE training_sessions s SET ends_at = s.starts_at + make_interval(mins => c.session_minutes)"
            " FROM trainer_allocations a JOIN courses c ON c.id = a.course_id WHERE a.id = s.allocation_id",
            migrations.RunSQL.noop,
        ),
        # Sessions that overlap from before (the old constraint only refused equal starts) keep the earliest
        # booked one; the later ones are cancelled so the new constraint can hold.
        migrations.RunSQL(
            "UPDATE training_sessions s SET status = 'cancelled' WHERE s.status <> 'cancelled' AND EXISTS ("
            " SELECT 1 FROM training_sessions o WHERE o.trainer_id = s.trainer_id AND o.status <> 'cancelled'"
            " AND o.id < s.id AND tstzrange(o.starts_at, o.ends_at) && tstzrange(s.starts_at, s.ends_at))",
            migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="trainingsession",
            name="ends_at",
            field=models.DateTimeField(help_text="starts_at + the course's session length."),
        ),
        migrations.RemoveConstraint(model_name="trainingsession", name="uniq_trainer_booking_per_instant"),
        migrations.AddConstraint(
            model_name="trainingsession",
            constraint=django.contrib.postgres.constraints.ExclusionConstraint(
                condition=models.Q(("status", "cancelled"), _negated=True),
                expressions=[
                    ("trainer", "="),
                    (sessions_sched.models.TsTzRange("starts_at", "ends_at",
                                                     django.contrib.postgres.fields.ranges.RangeBoundary()), "&&"),
                ],
                name="no_overlapping_trainer_sessions",
            ),
        ),
        migrations.AddConstraint(
            model_name="trainingsession",
            constraint=models.CheckConstraint(condition=models.Q(("ends_at__gt", django.db.models.expressions.F("starts_at"))),
                                              name="session_ends_after_it_starts"),
        ),
    ]
