"""The sessions app's rows of the enrollment trace (workers.trace): the sessions of the flow's allocation."""
from __future__ import annotations

import uuid

from sessions_sched.models import TrainingSession
from workers.trace import Step, TraceRow, TraceSection

MAX_SESSIONS_LISTED = 100


def trace_section(correlation_id: uuid.UUID) -> TraceSection:
    query = TrainingSession.objects.filter(allocation__correlation_id=correlation_id).order_by("starts_at", "id")
    count = query.count()
    sessions = list(query[:MAX_SESSIONS_LISTED])
    listed = "; ".join(f"{s.scheduled_date:%a %Y-%m-%d} {s.scheduled_time:%H:%M} ({s.status})" for s in sessions)
    section = TraceSection(rows=[TraceRow("Sessions", str(count), listed + ("\u2026" if count > len(sessions) else ""),
                                          element_id="trace-sessions-count")])
    if sessions:
        section.steps.append(Step(min(s.created_at for s in sessions), "sessions", f"{count} session(s) scheduled",
                                  f"from {sessions[0].scheduled_date} to {sessions[-1].scheduled_date}"))
    return section
