"""The student pages are composed of sections, one per app, listed in `settings.STUDENT_PAGE_SECTIONS` (flow
order) and loaded by dotted path like the stages. The core knows the page's frame (the student, the time it
was generated, the cache); each app adds what it owns: purchases the courses, allocations the trainer,
sessions the timetable. So the core imports no stage app, and a new stage shows on the pages by adding its
section to the list.
"""
from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from workers.registry import load

# One course of the learning page, as the sections build it up (JSON-ready).
CourseItem = dict[str, Any]


@dataclass(frozen=True)
class PageSection:
    """What one app contributes to the student pages.

    home:     (student_id, now) -> fields of the home page.
    learning: (student_id, items, now) -> None; the first section (purchases) appends one item per course
              the student bought, each with its "course": {"id", ...}; later sections add their fields to
              each item in place (e.g. "allocation", "upcoming_sessions").
    """

    home: Callable[[int, datetime.datetime], dict[str, Any]] | None = None
    learning: Callable[[int, list[CourseItem], datetime.datetime], None] | None = None


@functools.cache
def page_sections() -> tuple[PageSection, ...]:
    return tuple(load(path, "STUDENT_PAGE_SECTIONS", PageSection) for path in settings.STUDENT_PAGE_SECTIONS)


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "STUDENT_PAGE_SECTIONS":
        page_sections.cache_clear()


def home_fields(student_id: int, now: datetime.datetime) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for section in page_sections():
        if section.home is not None:
            fields.update(section.home(student_id, now))
    return fields


def learning_items(student_id: int, now: datetime.datetime) -> list[CourseItem]:
    items: list[CourseItem] = []
    for section in page_sections():
        if section.learning is not None:
            section.learning(student_id, items, now)
    return items
