"""Cancellations end to end: n enrollments made through the running pipeline, then all of them refunded at once
(purchases deactivated as the refund webhook does, PURCHASE_CANCELLED pre-produced), timed until every
allocation is released with its future sessions and the cache stage has consumed every event."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

from bench.common import produce_values, use_prefix, wait_for
from bench.cpu import measure
from bench.pipeline import Processes, wait_for_web

CANCEL_SQL = """
WITH cancelled AS (
    UPDATE student_course_purchases SET is_active = false, cancelled_at = clock_timestamp(),
           cancel_reason = 'requested_by_customer'
    WHERE is_active AND student_id BETWEEN %s AND %s
    RETURNING id, payment_id, student_id, course_id, correlation_id
), paid AS (
    UPDATE payments p SET status = 'refunded', status_reason = 'bench', status_changed_at = clock_timestamp()
    FROM cancelled c WHERE p.id = c.payment_id
)
SELECT * FROM cancelled
"""
HOLDING_SQL = ("SELECT count(*) FROM trainer_allocations WHERE status IN ('approved', 'active')"
               " AND student_id BETWEEN %s AND %s")


def _caught_up(stage) -> bool:
    from workers.kafka import group_lag

    return sum(group_lag(stage.group_id, list(stage.topics)).values()) == 0


def _enrol(n: int) -> tuple[int, int]:
    """n enrollments pre-produced as PURCHASE_CONFIRMED; returns the students' id range."""
    from tools.seed import purchase_confirmed, seed_catalog, seed_payments
    from workers.kafka import topic

    payments = seed_payments(seed_catalog(n, courses=5), prefix="cancel")
    produce_values(topic("purchase-confirmed"),
                   [(str(p.student_id).encode(), purchase_confirmed(p).to_json()) for p in payments])
    return min(p.student_id for p in payments), max(p.student_id for p in payments)


def _cancel(students: tuple[int, int]) -> int:
    """Refund every enrollment of the students, as the refund webhook would; returns how many."""
    from django.db import connection, transaction

    from enrollment.events import PURCHASE_CANCELLED
    from workers.envelope import build_event
    from workers.kafka import topic

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(CANCEL_SQL, students)
        rows = cur.fetchall()
    events = [build_event(PURCHASE_CANCELLED, {"purchase_id": pk, "payment_id": payment_id, "student_id": student_id,
                                               "course_id": course_id, "reason": "requested_by_customer"},
                          correlation_id=correlation_id)
              for pk, payment_id, student_id, course_id, correlation_id in rows]
    produce_values(topic("purchase-cancelled"), [(str(e.payload.student_id).encode(), e.to_json()) for e in events])
    return len(events)


def cancellations_end_to_end(n: int, env: dict[str, str], log_dir: Path) -> dict:
    from django.db import connection

    from workers import health

    prefix = f"bench-cancel-{uuid.uuid4().hex[:6]}."
    use_prefix(prefix)
    procs = Processes({**env, "KAFKA_TOPIC_PREFIX": prefix, "CACHE_KEY_PREFIX": prefix}, log_dir)
    stages = {name: t for name, t in health.targets().items() if name != "dead_letters"}
    try:
        procs.start("web")
        wait_for_web(env["ADMIN_SERVICE_URL"])
        procs.start("relay", *stages)
        students = _enrol(n)

        def holding() -> int:
            with connection.cursor() as cur:
                cur.execute(HOLDING_SQL, students)
                return cur.fetchone()[0]

        wait_for(lambda: holding() == n and all(_caught_up(s) for s in stages.values()), 900, "enrolled")
        cpu = measure(lambda: {name: procs.pid(name) for name in procs.procs})
        started = time.monotonic()
        cancelled = _cancel(students)
        wait_for(lambda: _caught_up(stages["allocations"]) and holding() == 0, 900, "allocations released",
                 interval=0.25)
        wait_for(lambda: _caught_up(stages["cache"]), 120, "cache caught up", interval=0.25)
        seconds = time.monotonic() - started
        cpu_seconds = cpu()
    finally:
        procs.stop()
    return {"cancellations": cancelled, "seconds": round(seconds, 2), "per_second": round(cancelled / seconds, 1),
            "cpu_ms_per_cancellation": {k: round(1000 * v / cancelled, 3) for k, v in cpu_seconds.items()}}
