"""Allocation requests for students who bought their course (the service checks the purchase)."""
from __future__ import annotations

import uuid

from allocations.batch import Request
from allocations.services import allocate
from tests.factories import purchase_of


def allocate_bought(student_id: int, course_id: int, correlation_id: uuid.UUID | None = None):
    """`allocate()` for the student's purchase of the course (bought here if needed)."""
    return allocate(student_id, course_id, correlation_id, purchase_id=purchase_of(student_id, course_id).pk)


def bought(student_id: int, course_id: int, correlation_id: uuid.UUID | None = None) -> Request:
    return Request(student_id, course_id, correlation_id, purchase_of(student_id, course_id).pk)
