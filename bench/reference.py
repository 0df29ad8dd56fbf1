"""The purchases stage next to the simplest consumer that does its database work: a plain batched psycopg loop.

Issue 19's reference: per polled batch of 500 PURCHASE_CONFIRMED it inserts the same three kinds of rows as the
stage (the claim in processed_events, the purchase, the PURCHASE_CREATED outbox row) in one transaction with
`INSERT ... SELECT FROM unnest`, then commits the offsets. It does none of what the stage does besides:
no envelope validation, no payment, price or ownership checks, no publishing of the next event, no retries,
dead letters, metrics or key order. It is the floor the stage's rate is compared with, in the same run and on
the same number of events (`compare`).
"""
from __future__ import annotations

import json
import time
import uuid

from bench.common import produce_values, quiet_database, use_prefix
from bench.cpu import measure
from bench.stages import cpu_per_event


def _topic(base: str) -> str:
    from workers.kafka import topic

    return topic(base)

CLAIM_SQL = """
INSERT INTO processed_events (consumer, event_id, event_type, correlation_id, processed_at)
SELECT %s, e, 'PURCHASE_CONFIRMED', c, now() FROM unnest(%s::uuid[], %s::uuid[]) AS u(e, c)
"""
PURCHASES_SQL = """
INSERT INTO student_course_purchases (student_id, course_id, payment_id, correlation_id, is_active, created_at,
                                      cancel_reason)
SELECT s, c, p, k, true, now(), '' FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::uuid[]) AS u(s, c, p, k)
RETURNING id, payment_id
"""
OUTBOX_SQL = """
INSERT INTO outbox_events (event_id, event_type, topic, key, value, correlation_id, created_at, publish_attempts,
                           last_error)
SELECT e, 'PURCHASE_CREATED', %s, k, v, c, now(), 0, '' FROM unnest(%s::uuid[], %s::text[], %s::bytea[], %s::uuid[])
    AS u(e, k, v, c)
"""


def plain_loop(topic_name: str, n: int, batch_size: int = 500) -> dict[str, float]:
    """Consume n PURCHASE_CONFIRMED from topic_name with the plain loop; events/s from the first poll."""
    import psycopg
    from confluent_kafka import TopicPartition
    from django.db import connection

    from workers.kafka import make_consumer, topic

    group = topic("reference-purchases")
    consumer = make_consumer(group)
    consumer.subscribe([topic_name])
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    cpu = measure(lambda: {})
    done, first, deadline = 0, None, time.monotonic() + 600
    with psycopg.connect(**params) as db:
        while done < n and time.monotonic() < deadline:
            messages = [m for m in consumer.consume(batch_size, timeout=0.1) if m.error() is None]
            if not messages:
                continue
            if first is None:
                first = time.perf_counter()
            envelopes = [json.loads(m.value()) for m in messages]
            _insert_batch(db, group, envelopes)
            ends = {(m.topic(), m.partition()): m.offset() + 1 for m in messages}
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in ends.items()], asynchronous=False)
            done += len(messages)
        seconds = time.perf_counter() - first
        # Before the connection closes: a backend that has exited but not been reaped yet is counted nowhere
        # (bench/cpu.py), and the loop's PostgreSQL figure read 0.0 and 0.5 us per event in two runs.
        used = cpu()
        _settle(db)
    consumer.close()
    return {"events": done, "seconds": round(seconds, 2), "per_second": round(done / seconds, 1),
            "batch_size": batch_size, "cpu_us_per_event": cpu_per_event(used, done)}


def _settle(db) -> None:
    """Mark the loop's outbox rows sent (after its measurement). Nothing publishes them; left pending, a relay of a
    later phase published all 20,000 in the middle of the end-to-end measurement, and the relays after it tried them
    226,682 times, refused (their principals may not write the loop's topic)."""
    db.execute("DELETE FROM outbox_pending p USING outbox_events o WHERE o.id = p.outbox_id AND o.topic = %s",
               [_topic("purchase-created")])


def _insert_batch(db, group: str, envelopes: list[dict]) -> None:
    payloads = [e["payload"] for e in envelopes]
    correlations = [e["correlation_id"] for e in envelopes]
    with db.transaction(), db.cursor() as cur:
        cur.execute(CLAIM_SQL, [group, [e["event_id"] for e in envelopes], correlations])
        cur.execute(PURCHASES_SQL, [[p["student_id"] for p in payloads], [p["course_id"] for p in payloads],
                                    [p["payment_id"] for p in payloads], correlations])
        created = {payment_id: pk for pk, payment_id in cur.fetchall()}
        values = [json.dumps({"event_type": "PURCHASE_CREATED", "purchase_id": created[p["payment_id"]],
                              **p}).encode() for p in payloads]
        cur.execute(OUTBOX_SQL, [_topic("purchase-created"), [str(uuid.uuid4()) for _ in envelopes],
                                 [str(p["student_id"]) for p in payloads], values, correlations])


def compare(n: int) -> dict:
    """The purchases stage and the plain loop, each on n fresh PURCHASE_CONFIRMED of their own per run, in the
    order stage, loop, loop, stage: a drift of the machine over the four runs (a broker that `make bench` has just
    started warms up over the first minutes, say) then weighs on both alike, where one stage run before one loop
    run measured the stage on the colder broker (82 us of broker CPU per event against the loop's 4, in one run).
    The ratio is of the mean rates; `stage` and `plain_loop` are the means of their two runs."""
    from bench.stages import run_stage

    runs: dict[str, list[dict]] = {"stage": [], "plain_loop": []}
    for which in ("stage", "plain_loop", "plain_loop", "stage"):
        runs[which].append(run_stage("purchases", n, 500) if which == "stage" else _plain_run(n))
    stage, loop = _mean(runs["stage"]), _mean(runs["plain_loop"])
    return {"events": n, "order": "stage, loop, loop, stage", "stage": stage, "plain_loop": loop,
            "stage_per_second": [r["per_second"] for r in runs["stage"]],
            "plain_loop_per_second": [r["per_second"] for r in runs["plain_loop"]],
            "ratio": round(stage["per_second"] / loop["per_second"], 3)}


def _plain_run(n: int) -> dict:
    from bench.stages import purchases_events

    use_prefix(f"bench-reference-{uuid.uuid4().hex[:6]}.")
    events = purchases_events(n)
    produce_values(_topic("purchase-confirmed"), [(str(e.key).encode(), e.to_json()) for e in events])
    quiet_database()  # as run_stage does: the seeding's vacuum is not the loop's work
    return plain_loop(_topic("purchase-confirmed"), n)


def _mean(runs: list[dict]) -> dict:
    """per_second and cpu_us_per_event averaged over runs."""
    cpu = [r["cpu_us_per_event"] for r in runs if r.get("cpu_us_per_event")]
    mean = {"per_second": round(sum(r["per_second"] for r in runs) / len(runs), 1)}
    if cpu:
        mean["cpu_us_per_event"] = {k: round(sum(c[k] for c in cpu) / len(cpu), 1) for k in cpu[0]}
    return mean
