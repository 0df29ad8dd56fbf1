"""The allocations app's rows of the enrollment trace (workers.trace): the trainer allocation and its release."""
from __future__ import annotations

import uuid

from allocations.models import TrainerAllocation
from workers.trace import Step, TraceRow, TraceSection, admin_url


def trace_section(correlation_id: uuid.UUID) -> TraceSection:
    allocations = TrainerAllocation.objects.filter(correlation_id=correlation_id).select_related("trainer", "course")
    section = TraceSection()
    for a in allocations:
        section.steps.append(Step(a.created_at, "allocations", "Trainer allocated",
                                  f"allocation {a.pk}: {a.trainer} at {a.slot_time:%H:%M}", url=admin_url(a)))
        if a.released_at is not None:
            section.steps.append(Step(a.released_at, "allocations", f"Allocation {a.status}",
                                      f"allocation {a.pk}: {a.trainer}'s time freed, future sessions cancelled",
                                      url=admin_url(a)))
        section.rows.append(TraceRow("Allocation", f"#{a.pk}", f"{a.trainer} at {a.slot_time:%H:%M}, {a.status}",
                                     admin_url(a)))
    if not section.rows:
        section.rows.append(TraceRow("Allocation", None))
    return section
