"""The invariants of a finished run (demo, chaos): every payment became exactly one purchase, one allocation and
7 future weekday sessions, nothing duplicated, nothing left behind in the outbox or the consumer groups."""
from __future__ import annotations

from django.db import connection

from workers.kafka import group_lag
from workers.models import OutboxEvent
from workers.registry import stages


def total_lag() -> int:
    """Messages not yet committed by the registered stages' groups, over all their partitions."""
    return sum(sum(group_lag(s.kafka_group_id(), s.topic_names()).values()) for s in stages())


def invariants(n: int, expected_dead_letters: int = 0) -> dict[str, bool]:
    """What must hold once n payments went through the pipeline of a database of their own."""
    checks = {}
    with connection.cursor() as cur:
        def one(sql: str) -> int:
            cur.execute(sql)
            return cur.fetchone()[0]

        checks["one payment per confirmation"] = one("SELECT count(*) FROM payments") == n
        checks["no duplicate purchase"] = one(
            "SELECT count(*) FROM (SELECT student_id, course_id FROM student_course_purchases"
            " GROUP BY 1, 2 HAVING count(*) > 1) d") == 0
        checks["every payment has a purchase"] = one("SELECT count(*) FROM student_course_purchases") == n
        checks["no duplicate allocation"] = one(
            "SELECT count(*) FROM (SELECT student_id, course_id FROM trainer_allocations"
            " GROUP BY 1, 2 HAVING count(*) > 1) d") == 0
        checks["every purchase has an allocation"] = one("SELECT count(*) FROM trainer_allocations") == n
        checks["exactly 7 sessions per payment in all"] = one("SELECT count(*) FROM training_sessions") == 7 * n
        checks["no duplicate session"] = one(
            "SELECT count(*) FROM (SELECT allocation_id, scheduled_date, scheduled_time FROM training_sessions"
            " GROUP BY 1, 2, 3 HAVING count(*) > 1) d") == 0
        checks["no trainer double-booked"] = one(
            "SELECT count(*) FROM (SELECT trainer_id, starts_at FROM training_sessions"
            " GROUP BY 1, 2 HAVING count(*) > 1) d") == 0
        # "Future" as of when each session was booked: a slot that starts seconds after it was booked (08:00 in
        # Sydney while a run crosses 21:00 UTC) has passed by the time the run is checked, and that is no fault.
        checks["every payment has 7 future weekday sessions"] = one(
            "SELECT count(*) FROM (SELECT a.id FROM trainer_allocations a JOIN training_sessions s"
            " ON s.allocation_id = a.id JOIN courses c ON c.id = a.course_id WHERE s.starts_at > s.created_at"
            " AND extract(isodow FROM s.starts_at AT TIME ZONE c.time_zone) < 6"
            " GROUP BY a.id HAVING count(*) = 7) ok") == n
        checks[f"dead letters: exactly the {expected_dead_letters} expected"] = (
            one("SELECT count(*) FROM dead_letters") == expected_dead_letters)
    checks["every outbox event sent"] = not OutboxEvent.objects.filter(sent_at__isnull=True).exists()
    checks["every consumer group caught up"] = total_lag() == 0
    return checks
