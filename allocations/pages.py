"""The allocations app's section of the student pages (enrollment.pages): each course's trainer and slot."""
from __future__ import annotations

import datetime
from typing import Any

from allocations.models import TrainerAllocation
from enrollment.pages import CourseItem, PageSection


def home(student_id: int, now: datetime.datetime) -> dict[str, Any]:
    holding = TrainerAllocation.objects.filter(student_id=student_id, status__in=TrainerAllocation.HOLDING_STATUSES)
    return {"courses_with_trainer": holding.count()}


def learning(student_id: int, items: list[CourseItem], now: datetime.datetime) -> None:
    """Adds "allocation" (None while no trainer holds a slot for the course) to each course."""
    allocations = {
        a.course_id: a
        for a in TrainerAllocation.objects.filter(
            student_id=student_id, status__in=TrainerAllocation.HOLDING_STATUSES
        ).select_related("trainer")
    }
    for item in items:
        allocation = allocations.get(item["course"]["id"])
        item["allocation"] = None if allocation is None else {
            "allocation_id": allocation.pk,
            "status": allocation.status,
            "trainer": {"id": allocation.trainer_id, "name": allocation.trainer.name},
            "slot_time": allocation.slot_time.strftime("%H:%M"),
            "weekdays": sorted(allocation.slot_weekdays),
        }


SECTION = PageSection(home=home, learning=learning)
