"""The purchases app's section of the student pages (enrollment.pages): the courses the student bought."""
from __future__ import annotations

import datetime
from typing import Any

from enrollment.pages import CourseItem, PageSection
from purchases.models import StudentCoursePurchase


def home(student_id: int, now: datetime.datetime) -> dict[str, Any]:
    return {"active_courses": StudentCoursePurchase.objects.filter(student_id=student_id, is_active=True).count()}


def learning(student_id: int, items: list[CourseItem], now: datetime.datetime) -> None:
    """One item per active purchase, oldest first."""
    purchases = (StudentCoursePurchase.objects.filter(student_id=student_id, is_active=True)
                 .select_related("course").order_by("created_at", "id"))
    for purchase in purchases:
        course = purchase.course
        items.append({
            "purchase_id": purchase.pk,
            "purchased_at": purchase.created_at.isoformat(),
            "course": {"id": course.pk, "title": course.title, "time_zone": course.time_zone},
        })


SECTION = PageSection(home=home, learning=learning)
