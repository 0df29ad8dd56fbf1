"""Students and courses: the two things every enrollment joins."""
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {value!r}") from exc


class Student(models.Model):
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True)
    # The platform's account of this student: signed in, it reads this student's pages (enrollment.access).
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="student")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "students"

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class Course(models.Model):
    title = models.CharField(max_length=200)
    # Sessions are scheduled in this zone: "weekday" and "future" are computed here, not on the server.
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    session_minutes = models.PositiveSmallIntegerField(default=60)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    currency = models.CharField(max_length=3, default="USD")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "courses"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(session_minutes__gt=0, session_minutes__lte=240), name="course_session_minutes_range"
            ),
            models.CheckConstraint(condition=models.Q(price__gte=0), name="course_price_not_negative"),
        ]

    def __str__(self) -> str:
        return self.title
