"""The invariants of a finished run (demo, chaos), derived from what the provider sent (`Expected`), not from
"n payments -> n purchases": refunds cancel enrollments, re-purchases make new ones, duplicates and wrong amounts
buy nothing. Every check is a count measured in the database against the count it must have (`Check`)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import connection

from workers.kafka import group_lag
from workers.models import OutboxEvent
from workers.registry import stages

HOLDING = "('approved', 'active')"
Query = Callable[..., tuple]


@dataclass(frozen=True)
class Expected:
    """What was sent and accepted (200/202): `payments` counts every confirmation (first ones, re-purchases,
    duplicates); the others are the provider_payment_ids of each kind."""

    payments: int
    refunded: tuple[str, ...] = ()  # refunded in full or charged back
    repurchased: tuple[str, ...] = ()  # the new payments of the same student and course after such a refund
    duplicates: tuple[str, ...] = ()  # second payments for a student and course that already had one
    mismatches: tuple[str, ...] = ()  # paid another amount than the course's price
    partial: tuple[str, ...] = ()  # partially refunded: the enrollment stays
    dead_letters: int = 0

    @property
    def enrollments(self) -> int:
        """Payments that must end up holding an enrollment (a re-purchase is one, its refunded payment not)."""
        return self.payments - len(self.refunded) - len(self.duplicates) - len(self.mismatches)


@dataclass(frozen=True)
class Check:
    name: str
    got: int
    want: int

    @property
    def ok(self) -> bool:
        return self.got == self.want


def total_lag() -> int:
    """Messages not yet committed by the registered stages' groups, over all their partitions."""
    return sum(sum(group_lag(s.kafka_group_id(), s.topic_names()).values()) for s in stages())


# Sessions of one trainer as intervals [starts_at, starts_at + the course's session length): a session overlaps
# when it starts before the latest end of the trainer's sessions that start before it (or at the same instant).
OVERLAPS_SQL = """
SELECT count(*) FROM (
    SELECT s.starts_at, max(s.starts_at + make_interval(mins => c.session_minutes)) OVER (
        PARTITION BY s.trainer_id ORDER BY s.starts_at, s.id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    ) AS busy_until
    FROM training_sessions s JOIN trainer_allocations a ON a.id = s.allocation_id
    JOIN courses c ON c.id = a.course_id WHERE s.status <> 'cancelled') t
WHERE busy_until > starts_at"""
# "Future" as of when each session was booked: a slot that starts seconds after it was booked (08:00 in Sydney
# while a run crosses 21:00 UTC) has passed by the time the run is checked, and that is no fault.
FULL_WINDOWS_SQL = f"""
SELECT count(*) FROM (SELECT a.id FROM trainer_allocations a JOIN training_sessions s ON s.allocation_id = a.id
    JOIN courses c ON c.id = a.course_id
    WHERE a.status IN {HOLDING} AND s.status = 'scheduled' AND s.starts_at > s.created_at
      AND extract(isodow FROM s.starts_at AT TIME ZONE c.time_zone) < 6
    GROUP BY a.id HAVING count(*) = 7) ok"""
# The allocations a refunded payment had: those of its purchase, and any of the student and course that name no
# purchase (made before allocations named theirs: they cannot be told apart from a re-purchase's).
REFUNDED_ALLOCATIONS_SQL = """
WITH refunded_allocations AS (
    SELECT a.id, a.status FROM payments p
    JOIN trainer_allocations a ON a.student_id = p.student_id AND a.course_id = p.course_id
    LEFT JOIN student_course_purchases pu ON pu.id = a.purchase_id
    WHERE p.provider_payment_id = ANY(%s::text[]) AND (a.purchase_id IS NULL OR pu.payment_id = p.id))"""
# Per payment that must hold its enrollment: its active purchase, that purchase's one holding allocation, and
# that allocation's 7 future scheduled sessions.
ENROLLED_SQL = f"""
SELECT count(pu.id), count(*) FILTER (WHERE al.n = 1), count(*) FILTER (WHERE al.n = 1 AND al.future = 7)
FROM payments p JOIN student_course_purchases pu ON pu.payment_id = p.id AND pu.is_active
LEFT JOIN LATERAL (
    SELECT count(DISTINCT a.id) AS n,
           count(s.id) FILTER (WHERE s.status = 'scheduled' AND s.starts_at > s.created_at) AS future
    FROM trainer_allocations a LEFT JOIN training_sessions s ON s.allocation_id = a.id
    WHERE a.purchase_id = pu.id AND a.status IN {HOLDING}) al ON true
WHERE p.provider_payment_id = ANY(%s::text[])"""


def _pipeline_checks(q: Query, e: Expected) -> list[Check]:
    """Whole-run counts: one payment per confirmation, one active purchase, holding allocation and 7 sessions
    per enrollment, nothing duplicated, no trainer double-booked."""
    return [
        Check("one payment per confirmation accepted", q("SELECT count(*) FROM payments")[0], e.payments),
        Check("one active purchase per enrollment",
              q("SELECT count(*) FROM student_course_purchases WHERE is_active")[0], e.enrollments),
        Check("no duplicate active purchase", q(
            "SELECT count(*) FROM (SELECT student_id, course_id FROM student_course_purchases WHERE is_active"
            " GROUP BY 1, 2 HAVING count(*) > 1) d")[0], 0),
        Check("no duplicate holding allocation", q(
            f"SELECT count(*) FROM (SELECT student_id, course_id FROM trainer_allocations WHERE status IN {HOLDING}"
            " GROUP BY 1, 2 HAVING count(*) > 1) d")[0], 0),
        Check("every active purchase has one holding allocation", q(
            "SELECT count(*) FROM student_course_purchases pu WHERE pu.is_active AND (SELECT count(*) FROM"
            f" trainer_allocations a WHERE a.purchase_id = pu.id AND a.status IN {HOLDING}) = 1")[0], e.enrollments),
        Check("every holding allocation serves an active purchase", q(
            "SELECT count(*) FROM trainer_allocations a LEFT JOIN student_course_purchases pu ON pu.id = a.purchase_id"
            f" WHERE a.status IN {HOLDING} AND (pu.id IS NULL OR NOT pu.is_active)")[0], 0),
        Check("7 sessions per enrollment in all (cancelled ones aside)", q(
            "SELECT count(*) FROM training_sessions s JOIN trainer_allocations a ON a.id = s.allocation_id"
            f" WHERE a.status IN {HOLDING} AND s.status <> 'cancelled'")[0], 7 * e.enrollments),
        Check("every enrollment has 7 future weekday sessions", q(FULL_WINDOWS_SQL)[0], e.enrollments),
        Check("no future scheduled session of a released allocation", q(
            "SELECT count(*) FROM training_sessions s JOIN trainer_allocations a ON a.id = s.allocation_id"
            f" WHERE a.status NOT IN {HOLDING} AND s.status = 'scheduled' AND s.starts_at > now()")[0], 0),
        Check("no duplicate session", q(
            "SELECT count(*) FROM (SELECT allocation_id, scheduled_date, scheduled_time FROM training_sessions"
            " GROUP BY 1, 2, 3 HAVING count(*) > 1) d")[0], 0),
        Check("no trainer has overlapping sessions", q(OVERLAPS_SQL)[0], 0),
        Check(f"dead letters: exactly the {e.dead_letters} expected",
              q("SELECT count(*) FROM dead_letters")[0], e.dead_letters),
    ]


def _status(q: Query, label: str, ids: Sequence[str], status: str) -> Check:
    got = q("SELECT count(*) FROM payments WHERE provider_payment_id = ANY(%s::text[]) AND status = %s",
            list(ids), status)[0]
    return Check(f"{label}: status '{status}'", got, len(ids))


def _refunded_checks(q: Query, e: Expected) -> list[Check]:
    """A full refund or a chargeback took the whole enrollment back: purchase, allocation, future sessions."""
    ids, label = list(e.refunded), f"{len(e.refunded)} refunded in full or charged back"
    return [
        _status(q, label, ids, "refunded"),
        Check(f"{label}: no active purchase", q(
            "SELECT count(*) FROM student_course_purchases pu JOIN payments p ON p.id = pu.payment_id"
            " WHERE p.provider_payment_id = ANY(%s::text[]) AND pu.is_active", ids)[0], 0),
        Check(f"{label}: no holding allocation", q(
            REFUNDED_ALLOCATIONS_SQL + f" SELECT count(*) FROM refunded_allocations WHERE status IN {HOLDING}",
            ids)[0], 0),
        Check(f"{label}: no future scheduled session", q(
            REFUNDED_ALLOCATIONS_SQL + " SELECT count(*) FROM refunded_allocations ra JOIN training_sessions s"
            " ON s.allocation_id = ra.id WHERE s.status = 'scheduled' AND s.starts_at > now()", ids)[0], 0),
    ]


def _enrolled_checks(q: Query, label: str, ids: Sequence[str], status: str) -> list[Check]:
    purchases, allocations, windows = q(ENROLLED_SQL, list(ids))
    return [
        _status(q, label, ids, status),
        Check(f"{label}: one active purchase each", purchases, len(ids)),
        Check(f"{label}: one holding allocation each", allocations, len(ids)),
        Check(f"{label}: 7 future scheduled sessions each", windows, len(ids)),
    ]


def _flagged_checks(q: Query, label: str, ids: Sequence[str], status: str) -> list[Check]:
    """A payment flagged for review or as a duplicate bought nothing."""
    purchases = q("SELECT count(*) FROM student_course_purchases pu JOIN payments p ON p.id = pu.payment_id"
                  " WHERE p.provider_payment_id = ANY(%s::text[])", list(ids))[0]
    return [_status(q, label, ids, status), Check(f"{label}: no purchase", purchases, 0)]


def measure(e: Expected) -> list[Check]:
    """Every invariant of a run that sent `e`, on a database of its own, once the pipeline is idle."""
    with connection.cursor() as cur:
        def q(sql: str, *params: object) -> tuple:
            cur.execute(sql, params or None)
            return cur.fetchone()

        checks = [
            *_pipeline_checks(q, e),
            *_refunded_checks(q, e),
            *_enrolled_checks(q, f"{len(e.repurchased)} re-purchases", e.repurchased, "confirmed"),
            *_enrolled_checks(q, f"{len(e.partial)} partially refunded", e.partial, "partially_refunded"),
            *_flagged_checks(q, f"{len(e.mismatches)} wrong amounts", e.mismatches, "needs_review"),
            *_flagged_checks(q, f"{len(e.duplicates)} duplicates", e.duplicates, "duplicate"),
        ]
    checks.append(Check("every outbox event sent", OutboxEvent.objects.unsent().count(), 0))
    checks.append(Check("every consumer group caught up", total_lag(), 0))
    return checks


def invariants(e: Expected) -> dict[str, bool]:
    """Invariant name -> whether it holds (`measure` has the figures)."""
    return {c.name: c.ok for c in measure(e)}
