"""Each stage alone, batched (one transaction per polled batch) versus one event per transaction and commit,
in the same run: events/s from the first polled message to the last one committed."""
from __future__ import annotations

import time
import uuid

from bench.common import produce_values, quiet_database, use_prefix
from bench.cpu import measure


def _seed_pairs(n: int) -> list[tuple[int, int]]:
    from tools.seed import seed_catalog

    return seed_catalog(n, courses=5)


def purchases_events(n: int) -> list:
    from tools.seed import purchase_confirmed, seed_payments

    return [purchase_confirmed(p) for p in seed_payments(_seed_pairs(n), prefix="bench")]


def allocations_events(n: int) -> list:
    """PURCHASE_CREATED of real active purchases: the allocation API checks each one."""
    from enrollment.events import PURCHASE_CREATED
    from tools.seed import seed_payments, seed_purchases
    from workers.envelope import build_event

    purchases = seed_purchases(seed_payments(_seed_pairs(n), prefix="bench"))
    return [build_event(PURCHASE_CREATED, {"purchase_id": p.pk, "payment_id": p.payment_id,
                                           "student_id": p.student_id, "course_id": p.course_id},
                        correlation_id=p.correlation_id) for p in purchases]


def sessions_events(n: int) -> list:
    from allocations.models import (
        MAX_TRAINER_CAPACITY,
        Trainer,
        TrainerAllocation,
        slot_time,
    )
    from enrollment.events import TRAINER_ALLOCATED
    from workers.envelope import build_event

    pairs = _seed_pairs(n)
    teachers: dict[int, list[int]] = {}  # course -> its trainers (as the allocation API would pick them)
    for trainer_id, course_id in Trainer.courses.through.objects.filter(
        course_id__in={c for _, c in pairs}
    ).order_by("trainer_id").values_list("trainer_id", "course_id"):
        teachers.setdefault(course_id, []).append(trainer_id)
    taken: dict[int, int] = {}
    rows = []
    for s, c in pairs:
        k = taken[c] = taken.get(c, -1) + 1
        rows.append(TrainerAllocation(student_id=s, course_id=c, trainer_id=teachers[c][k // MAX_TRAINER_CAPACITY],
                                      slot_time=slot_time(k % MAX_TRAINER_CAPACITY), slot_weekdays=[0, 1, 2, 3, 4],
                                      correlation_id=uuid.uuid4()))
    allocations = TrainerAllocation.objects.bulk_create(rows, batch_size=2000)
    return [build_event(TRAINER_ALLOCATED, {"allocation_id": a.pk, "trainer_id": a.trainer_id,
                                            "student_id": a.student_id, "course_id": a.course_id},
                        correlation_id=a.correlation_id) for a in allocations]


def cache_events(n: int) -> list:
    from enrollment.events import SESSIONS_SCHEDULED
    from workers.envelope import build_event

    return [build_event(SESSIONS_SCHEDULED, {"allocation_id": i + 1, "student_id": i + 1, "course_id": 1,
                                             "sessions_created": 7, "future_sessions": 7},
                        correlation_id=uuid.uuid4()) for i in range(n)]


# How the bench makes n events for each registered stage (the stages themselves come from the registry).
EVENTS = {
    "purchases": purchases_events,
    "allocations": allocations_events,
    "sessions": sessions_events,
    "cache": cache_events,
}


def names() -> list[str]:
    """The registered stages, in flow order; a stage the bench cannot feed yet is an error, not a silent gap."""
    from workers.registry import stages

    registered = [stage.name for stage in stages()]
    missing = [name for name in registered if name not in EVENTS]
    if missing:
        raise SystemExit(f"bench/stages.py has no event generator for stage(s) {missing}")
    return registered


def run_stage(name: str, n: int, batch_size: int) -> dict[str, float]:
    """Prepare n events in a fresh topic namespace, then time the stage's consumer over them."""
    from workers.consumer import StageConsumer
    from workers.envelope import topic_for_event_type
    from workers.registry import stage as registered_stage

    use_prefix(f"bench-{name}-{batch_size}-{uuid.uuid4().hex[:6]}.")
    stage = registered_stage(name)
    events = EVENTS[name](n)
    produce_values(topic_for_event_type(events[0].event_type),
                   [(str(e.key).encode(), e.to_json()) for e in events])
    quiet_database()  # the seeding's vacuum is not the stage's work
    consumer = StageConsumer(stage, batch_size=batch_size, batch_wait=0.1)
    consumer.begin()  # as `StageConsumer.run()` does in the consume command
    cpu = measure(lambda: {})
    done, first, deadline = 0, None, time.monotonic() + 600
    try:
        while done < n and time.monotonic() < deadline:
            polled = consumer.poll_once()
            if polled and first is None:
                first = time.perf_counter()
            done += polled
        seconds = time.perf_counter() - first
        used = cpu()
    finally:
        consumer.close()
    return {"events": done, "seconds": round(seconds, 2), "per_second": round(done / seconds, 1),
            "batch_size": batch_size, "cpu_us_per_event": cpu_per_event(used, done)}


def cpu_per_event(used: dict[str, float], events: int) -> dict[str, float]:
    """CPU microseconds per event: this process (the consumer), PostgreSQL, the broker and the whole machine."""
    names = {"consumer": "bench driver", "postgresql": "postgresql", "kafka": "kafka", "machine": "machine_busy"}
    return {name: round(1e6 * used[key] / max(events, 1), 1) for name, key in names.items()}


def compare(name: str, n_batched: int, n_single: int) -> dict:
    batched = run_stage(name, n_batched, 500)
    single = run_stage(name, n_single, 1)
    return {"batched": batched, "single": single, "ratio": round(batched["per_second"] / single["per_second"], 1)}
