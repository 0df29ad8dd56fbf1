"""The student's home and learning pages (JSON), cached in Redis under `student:home:{id}` and
`student:learning:{id}` (see enrollment.cache_invalidation for the real Redis key and the invalidation).

Redis down is not the student's problem: the page is built from the database and served uncached (logged).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from allocations.models import TrainerAllocation
from enrollment.cache_invalidation import CACHE_ERRORS, home_key, learning_key
from enrollment.models import Student
from purchases.models import StudentCoursePurchase
from sessions_sched.models import TrainingSession

log = logging.getLogger(__name__)

UPCOMING_PER_COURSE = 7


def _session_json(session: TrainingSession) -> dict[str, Any]:
    return {
        "session_id": session.pk,
        "date": session.scheduled_date.isoformat(),
        "time": session.scheduled_time.strftime("%H:%M"),
        "starts_at": session.starts_at.isoformat(),
    }


def _student(student_id: int) -> Student:
    student = Student.objects.filter(pk=student_id).only("id", "name").first()
    if student is None:
        raise Http404("unknown student")
    return student


def build_learning_page(student_id: int) -> dict[str, Any]:
    """Active purchases, each with its course, trainer allocation and upcoming sessions."""
    student = _student(student_id)
    now = timezone.now()
    purchases = list(
        StudentCoursePurchase.objects.filter(student_id=student_id, is_active=True)
        .select_related("course")
        .order_by("created_at", "id")
    )
    allocations = {
        a.course_id: a
        for a in TrainerAllocation.objects.filter(
            student_id=student_id, status__in=TrainerAllocation.HOLDING_STATUSES
        ).select_related("trainer")
    }
    sessions: dict[int, list[dict[str, Any]]] = {}
    upcoming = TrainingSession.objects.filter(
        allocation_id__in=[a.pk for a in allocations.values()],
        status=TrainingSession.Status.SCHEDULED,
        starts_at__gt=now,
    ).order_by("starts_at")
    for session in upcoming:
        bucket = sessions.setdefault(session.allocation_id, [])
        if len(bucket) < UPCOMING_PER_COURSE:
            bucket.append(_session_json(session))

    items = []
    for purchase in purchases:
        course = purchase.course
        allocation = allocations.get(course.pk)
        items.append(
            {
                "purchase_id": purchase.pk,
                "purchased_at": purchase.created_at.isoformat(),
                "course": {"id": course.pk, "title": course.title, "time_zone": course.time_zone},
                "allocation": None
                if allocation is None
                else {
                    "allocation_id": allocation.pk,
                    "status": allocation.status,
                    "trainer": {"id": allocation.trainer_id, "name": allocation.trainer.name},
                    "slot_time": allocation.slot_time.strftime("%H:%M"),
                    "weekdays": sorted(allocation.slot_weekdays),
                },
                "upcoming_sessions": [] if allocation is None else sessions.get(allocation.pk, []),
            }
        )
    return {
        "student": {"id": student.pk, "name": student.name},
        "purchases": items,
        "generated_at": now.isoformat(),
    }


def build_home_page(student_id: int) -> dict[str, Any]:
    """A summary: counts and the next session."""
    student = _student(student_id)
    now = timezone.now()
    upcoming = TrainingSession.objects.filter(
        allocation__student_id=student_id,
        allocation__status__in=TrainerAllocation.HOLDING_STATUSES,
        status=TrainingSession.Status.SCHEDULED,
        starts_at__gt=now,
    )
    nxt = upcoming.select_related("allocation__course", "trainer").order_by("starts_at").first()
    return {
        "student": {"id": student.pk, "name": student.name},
        "active_courses": StudentCoursePurchase.objects.filter(student_id=student_id, is_active=True).count(),
        "courses_with_trainer": TrainerAllocation.objects.filter(
            student_id=student_id, status__in=TrainerAllocation.HOLDING_STATUSES
        ).count(),
        "upcoming_sessions": upcoming.count(),
        "next_session": None
        if nxt is None
        else {
            **_session_json(nxt),
            "course": {"id": nxt.allocation.course_id, "title": nxt.allocation.course.title},
            "trainer": {"id": nxt.trainer_id, "name": nxt.trainer.name},
            "time_zone": nxt.allocation.course.time_zone,
        },
        "generated_at": now.isoformat(),
    }


def cached_page(key: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The page from the cache, or built and cached. A cache failure degrades to serving it uncached."""
    try:
        page = cache.get(key)
    except CACHE_ERRORS as exc:
        log.warning("page cache unavailable, serving uncached", extra={"key": key, "error": repr(exc)})
        return build()
    if page is None:
        page = build()
        try:
            cache.set(key, page)
        except CACHE_ERRORS as exc:
            log.warning("could not cache page", extra={"key": key, "error": repr(exc)})
    return page


def _page(key: str, build: Callable[[], dict[str, Any]]) -> JsonResponse:
    try:
        return JsonResponse(cached_page(key, build))
    except Http404:
        return JsonResponse({"error": "unknown student"}, status=404)


@require_GET
def student_home(request: HttpRequest, student_id: int) -> JsonResponse:
    return _page(home_key(student_id), lambda: build_home_page(student_id))


@require_GET
def student_learning(request: HttpRequest, student_id: int) -> JsonResponse:
    return _page(learning_key(student_id), lambda: build_learning_page(student_id))
