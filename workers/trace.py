"""The enrollment trace: everything one business flow (one correlation id) left behind, as a timeline across
stages, for the admin page `admin:workers_deadletter_trace`.

The framework contributes what it owns: the outbox (each event emitted, sent or not), processed_events (each
consumer group that handled an event, and when), pending retries, dead letters and what operators did to
them. Each registered stage contributes its own rows through its `trace` hook (a `TraceSection`: timeline
steps plus rows for the "Rows produced" table), as `django.contrib.admin` collects each app's `admin.py`.
Every table carries the correlation id, so the trace is a handful of indexed queries.
"""
from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field

from django.db.models import Model
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from workers import ordering
from workers.models import DeadLetter, OutboxEvent, PendingRetry, ProcessedEvent
from workers.registry import stages


@dataclass(frozen=True)
class Step:
    """One line of the timeline."""

    at: datetime.datetime
    source: str  # "api", a consumer group, a stage, "operator"
    title: str
    detail: str = ""
    state: str = "ok"  # ok | waiting | failed | info: how the page colours the line
    url: str | None = None


@dataclass(frozen=True)
class TraceRow:
    """One line of the "Rows produced" table: a kind of row, the row (a label, linked when it has an admin
    page; None for "none of this kind"), and a detail. `element_id` gives the label's cell an HTML id."""

    kind: str
    label: str | None
    detail: str = ""
    url: str | None = None
    element_id: str = ""


@dataclass
class TraceSection:
    """What one stage contributes to a trace."""

    steps: list[Step] = field(default_factory=list)
    rows: list[TraceRow] = field(default_factory=list)


@dataclass
class Trace:
    correlation_id: uuid.UUID
    steps: list[Step] = field(default_factory=list)
    rows: list[TraceRow] = field(default_factory=list)
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


def admin_url(obj: Model) -> str | None:
    """The admin change page of a row, or None when its model is not in the admin."""
    try:
        return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return None


def build_trace(correlation_id: uuid.UUID) -> Trace:
    """Collect every row of one flow and the timeline they make, oldest first."""
    cid = correlation_id
    trace = Trace(
        correlation_id=cid,
        outbox=list(OutboxEvent.objects.with_unsent().filter(correlation_id=cid).order_by("created_at", "id")),
        processed=list(ProcessedEvent.objects.filter(correlation_id=cid).order_by("processed_at", "id")),
        retries=list(PendingRetry.objects.filter(correlation_id=cid).order_by("next_attempt_at")),
        dead_letters=list(DeadLetter.objects.filter(correlation_id=cid).order_by("last_failed_at", "id")),
    )
    steps = _framework_steps(trace)  # first: on a tie, "Handled X" comes before what handling X made
    for stage in stages():  # flow order: the rows table reads like the pipeline
        if stage.trace is not None:
            section = stage.trace(cid)
            steps.extend(section.steps)
            trace.rows.extend(section.rows)
    trace.steps = sorted(steps, key=lambda step: step.at)  # stable: ties keep the order above
    return trace


def _framework_steps(t: Trace) -> list[Step]:
    steps: list[Step] = []
    for e in t.outbox:
        if not e.unsent:
            detail, state = f"to {e.topic}, sent", "ok"
        else:
            detail = f"to {e.topic}, NOT SENT ({e.publish_attempts} publish attempt(s)) {e.last_error}".rstrip()
            state = "waiting"
        steps.append(Step(e.created_at, "outbox", f"Emitted {e.event_type}", f"{detail}; event {e.event_id}",
                          state))
    for pe in t.processed:
        steps.append(Step(pe.processed_at, pe.consumer, f"Handled {pe.event_type}", f"event {pe.event_id}"))
    steps.extend(_retry_step(r) for r in t.retries)
    for d in t.dead_letters:
        steps.append(Step(d.last_failed_at, d.consumer_group, f"Dead-lettered by {d.stage} (now {d.status})",
                          f"{d.error_class}: {d.error_message} (attempts: {d.attempts})", "failed", admin_url(d)))
        if d.status != DeadLetter.Status.NEW and d.status_changed_at:
            who = f" by {d.status_changed_by}" if d.status_changed_by else ""
            steps.append(Step(d.status_changed_at, "operator", f"Dead letter {d.pk} {d.status}{who}",
                              d.status_reason, "info", admin_url(d)))
    return steps


def _retry_step(r: PendingRetry) -> Step:
    """A PendingRetry row as a line: a retry, an event waiting behind an earlier one of its key, or a dead-lettered
    event that holds its key (workers.ordering)."""
    if r.dead_lettered:
        return Step(r.last_failed_at, r.consumer, "Holding its key: dead-lettered",
                    "later events of this key wait behind it until the dead letter is discarded or replayed",
                    "failed")
    head, letter = ordering.waiting_behind(r)
    if head is None:
        return Step(r.last_failed_at, r.consumer, "Retry pending",
                    f"attempt {r.attempts}, next attempt at {r.next_attempt_at:%Y-%m-%d %H:%M:%S}: "
                    f"{r.error_class}: {r.error_message}", "waiting")
    if head.dead_lettered:
        title = f"Waiting behind dead letter #{letter.pk}" if letter else "Waiting behind a dead letter"
        return Step(r.first_failed_at, r.consumer, title, f"event {head.event_id} of the same key; discard or "
                    "replay the letter and this event runs", "waiting", admin_url(letter) if letter else None)
    return Step(r.first_failed_at, r.consumer, "Waiting behind a retry",
                f"event {head.event_id} of the same key, attempt {head.attempts}, next attempt at "
                f"{head.next_attempt_at:%Y-%m-%d %H:%M:%S}", "waiting")
