"""The student's home and learning pages (JSON), cached in Redis under `student:home:{id}` and
`student:learning:{id}` (see enrollment.cache_invalidation for the real Redis key and the invalidation).

The core builds the frame of each page (the student, when it was generated) and each app adds its section
(enrollment.pages, settings.STUDENT_PAGE_SECTIONS). Redis down is not the student's problem: the page is
built from the database and served uncached (logged).

Only the student themself or staff with the view permission reads them (enrollment.access); anyone else gets the
404 of an unknown id.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from enrollment.access import may_read
from enrollment.cache_invalidation import CACHE_ERRORS, home_key, learning_key
from enrollment.models import Student
from enrollment.pages import home_fields, learning_items

log = logging.getLogger(__name__)


def _student(student_id: int) -> Student:
    student = Student.objects.filter(pk=student_id).only("id", "name").first()
    if student is None:
        raise Http404("unknown student")
    return student


def build_learning_page(student_id: int) -> dict[str, Any]:
    """Active purchases, each with its course, trainer allocation and upcoming sessions."""
    student = _student(student_id)
    now = timezone.now()
    return {
        "student": {"id": student.pk, "name": student.name},
        "purchases": learning_items(student_id, now),
        "generated_at": now.isoformat(),
    }


def build_home_page(student_id: int) -> dict[str, Any]:
    """A summary: counts and the next session."""
    student = _student(student_id)
    now = timezone.now()
    return {"student": {"id": student.pk, "name": student.name}, **home_fields(student_id, now),
            "generated_at": now.isoformat()}


def cached_page(key: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The page from the cache, or built and cached. A cache failure degrades to serving it uncached."""
    try:
        page = cache.get(key)
    except CACHE_ERRORS as exc:
        log.warning("page cache unavailable, serving uncached", extra={"key": key, "error": repr(exc)})
        return build()
    except ValueError as exc:  # not JSON (planted, or left by an older serializer): never trusted, rebuilt
        log.warning("cached page unreadable, rebuilt", extra={"key": key, "error": repr(exc)})
        page = None
    if page is None:
        page = build()
        try:
            cache.set(key, page)
        except CACHE_ERRORS as exc:
            log.warning("could not cache page", extra={"key": key, "error": repr(exc)})
    return page


NOT_FOUND = {"error": "not found"}  # the same for an unknown id and for someone else's: nothing to probe


def _page(request: HttpRequest, student_id: int, key: str, build: Callable[[], dict[str, Any]]) -> JsonResponse:
    if not may_read(request, student_id):
        return JsonResponse(NOT_FOUND, status=404)
    try:
        response = JsonResponse(cached_page(key, build))
    except Http404:
        return JsonResponse(NOT_FOUND, status=404)
    response["Cache-Control"] = "private, no-store"  # one student's data: no shared cache may keep it
    return response


@require_GET
def student_home(request: HttpRequest, student_id: int) -> JsonResponse:
    return _page(request, student_id, home_key(student_id), lambda: build_home_page(student_id))


@require_GET
def student_learning(request: HttpRequest, student_id: int) -> JsonResponse:
    return _page(request, student_id, learning_key(student_id), lambda: build_learning_page(student_id))
