"""The enrollment trace: everything one enrollment (one correlation id, from the payment on) left behind, as a
timeline across stages, for the admin page `admin:workers_deadletter_trace`.

Sources: the payment, purchase, allocation and session rows it produced; the outbox (each event emitted, sent
or not); processed_events (each consumer group that handled an event, and when); pending retries; dead
letters and what operators did to them. Every one of these tables carries the correlation id (sessions through
their allocation), so the trace is a handful of indexed queries.
"""
from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field

from django.db.models import Model
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from allocations.models import TrainerAllocation
from purchases.models import Payment, StudentCoursePurchase
from sessions_sched.models import TrainingSession
from workers.models import DeadLetter, OutboxEvent, PendingRetry, ProcessedEvent

MAX_SESSIONS_LISTED = 100


@dataclass(frozen=True)
class Step:
    """One line of the timeline."""

    at: datetime.datetime
    source: str  # "api", a consumer group, a stage, "operator"
    title: str
    detail: str = ""
    state: str = "ok"  # ok | waiting | failed | info: how the page colours the line
    url: str | None = None


@dataclass
class Trace:
    correlation_id: uuid.UUID
    steps: list[Step] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    purchases: list[StudentCoursePurchase] = field(default_factory=list)
    allocations: list[TrainerAllocation] = field(default_factory=list)
    sessions: list[TrainingSession] = field(default_factory=list)
    sessions_count: int = 0
    outbox: list[OutboxEvent] = field(default_factory=list)
    processed: list[ProcessedEvent] = field(default_factory=list)
    retries: list[PendingRetry] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.steps


def trace_url(correlation_id: uuid.UUID | str) -> str:
    return reverse("admin:workers_deadletter_trace", args=[str(correlation_id)])


def trace_link(correlation_id: uuid.UUID | str | None) -> str:
    """An HTML link to the trace, for admin readonly fields ("-" without a correlation id)."""
    if not correlation_id:
        return "-"
    return format_html('<a href="{}">Enrollment trace of {}</a>', trace_url(correlation_id), correlation_id)


def _admin_url(obj: Model) -> str | None:
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:  # model not registered in the admin
        return None


def build_trace(correlation_id: uuid.UUID) -> Trace:
    """Collect every row of one enrollment and the timeline they make, oldest first."""
    cid = correlation_id
    trace = Trace(
        correlation_id=cid,
        payments=list(Payment.objects.filter(correlation_id=cid).select_related("student", "course")),
        purchases=list(StudentCoursePurchase.objects.filter(correlation_id=cid).select_related("course")),
        allocations=list(TrainerAllocation.objects.filter(correlation_id=cid).select_related("trainer", "course")),
        outbox=list(OutboxEvent.objects.filter(correlation_id=cid).order_by("created_at", "id")),
        processed=list(ProcessedEvent.objects.filter(correlation_id=cid).order_by("processed_at", "id")),
        retries=list(PendingRetry.objects.filter(correlation_id=cid).order_by("next_attempt_at")),
        dead_letters=list(DeadLetter.objects.filter(correlation_id=cid).order_by("last_failed_at", "id")),
    )
    sessions = TrainingSession.objects.filter(allocation__correlation_id=cid).order_by("starts_at", "id")
    trace.sessions_count = sessions.count()
    trace.sessions = list(sessions.select_related("trainer")[:MAX_SESSIONS_LISTED])
    trace.steps = sorted(_steps(trace), key=lambda step: step.at)  # stable: ties keep the flow's order
    return trace


def _steps(t: Trace) -> list[Step]:
    steps: list[Step] = []
    for p in t.payments:
        steps.append(Step(p.received_at, "api", "Payment received",
                          f"{p.provider_payment_id}: {p.amount} {p.currency}, student {p.student_id}, "
                          f"course {p.course_id}", url=_admin_url(p)))
    for e in t.outbox:
        if e.sent_at:
            detail, state = f"to {e.topic}, sent at {e.sent_at:%Y-%m-%d %H:%M:%S.%f}", "ok"
        else:
            detail = f"to {e.topic}, NOT SENT ({e.publish_attempts} publish attempt(s)) {e.last_error}".rstrip()
            state = "waiting"
        steps.append(Step(e.created_at, "outbox", f"Emitted {e.event_type}", f"{detail}; event {e.event_id}",
                          state))
    for pe in t.processed:
        steps.append(Step(pe.processed_at, pe.consumer, f"Handled {pe.event_type}", f"event {pe.event_id}"))
    for r in t.retries:
        steps.append(Step(r.last_failed_at, r.consumer, "Retry pending",
                          f"attempt {r.attempts}, next attempt at {r.next_attempt_at:%Y-%m-%d %H:%M:%S}: "
                          f"{r.error_class}: {r.error_message}", "waiting"))
    for d in t.dead_letters:
        steps.append(Step(d.last_failed_at, d.consumer_group, f"Dead-lettered by {d.stage} (now {d.status})",
                          f"{d.error_class}: {d.error_message} (attempts: {d.attempts})", "failed", _admin_url(d)))
        if d.status != DeadLetter.Status.NEW and d.status_changed_at:
            who = f" by {d.status_changed_by}" if d.status_changed_by else ""
            steps.append(Step(d.status_changed_at, "operator", f"Dead letter {d.pk} {d.status}{who}",
                              d.status_reason, "info", _admin_url(d)))
    for pu in t.purchases:
        steps.append(Step(pu.created_at, "purchases", "Purchase created",
                          f"purchase {pu.pk}, course {pu.course}, active: {pu.is_active}", url=_admin_url(pu)))
    for a in t.allocations:
        steps.append(Step(a.created_at, "allocations", "Trainer allocated",
                          f"allocation {a.pk}: {a.trainer} at {a.slot_time:%H:%M}, status {a.status}",
                          url=_admin_url(a)))
    if t.sessions:
        first = min(s.created_at for s in t.sessions)
        steps.append(Step(first, "sessions", f"{t.sessions_count} session(s) scheduled",
                          f"from {t.sessions[0].scheduled_date} to {t.sessions[-1].scheduled_date}"))
    return steps
