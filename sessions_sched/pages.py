"""The sessions app's section of the student pages (enrollment.pages): upcoming sessions and the next one."""
from __future__ import annotations

import datetime
from typing import Any

from allocations.models import TrainerAllocation
from enrollment.pages import CourseItem, PageSection
from sessions_sched.models import TrainingSession

UPCOMING_PER_COURSE = 7


def _session_json(session: TrainingSession) -> dict[str, Any]:
    return {
        "session_id": session.pk,
        "date": session.scheduled_date.isoformat(),
        "time": session.scheduled_time.strftime("%H:%M"),
        "starts_at": session.starts_at.isoformat(),
    }


def home(student_id: int, now: datetime.datetime) -> dict[str, Any]:
    upcoming = TrainingSession.objects.filter(
        allocation__student_id=student_id,
        allocation__status__in=TrainerAllocation.HOLDING_STATUSES,
        status=TrainingSession.Status.SCHEDULED,
        starts_at__gt=now,
    )
    nxt = upcoming.select_related("allocation__course", "trainer").order_by("starts_at").first()
    return {
        "upcoming_sessions": upcoming.count(),
        "next_session": None if nxt is None else {
            **_session_json(nxt),
            "course": {"id": nxt.allocation.course_id, "title": nxt.allocation.course.title},
            "trainer": {"id": nxt.trainer_id, "name": nxt.trainer.name},
            "time_zone": nxt.allocation.course.time_zone,
        },
    }


def learning(student_id: int, items: list[CourseItem], now: datetime.datetime) -> None:
    """Adds "upcoming_sessions" (the next 7 scheduled) to each course; none without an allocation."""
    allocation_ids = [item["allocation"]["allocation_id"] for item in items if item.get("allocation")]
    sessions: dict[int, list[dict[str, Any]]] = {}
    upcoming = TrainingSession.objects.filter(
        allocation_id__in=allocation_ids, status=TrainingSession.Status.SCHEDULED, starts_at__gt=now,
    ).order_by("starts_at")
    for session in upcoming:
        bucket = sessions.setdefault(session.allocation_id, [])
        if len(bucket) < UPCOMING_PER_COURSE:
            bucket.append(_session_json(session))
    for item in items:
        allocation = item.get("allocation")
        item["upcoming_sessions"] = [] if not allocation else sessions.get(allocation["allocation_id"], [])


SECTION = PageSection(home=home, learning=learning)
