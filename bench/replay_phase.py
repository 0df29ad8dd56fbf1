"""The chaos run's last phase: every consumer group of the pipeline reads its topics again from offset 0, with
two consumer processes per group, while one of each group is SIGKILLed (and started again a little later).

What users rely on: a group reset (an operator's mistake, a recovery drill, a new deployment reading from the
start) changes nothing, because every event is skipped by its processed-event claim (the cache stage deletes
pages again, which changes nothing either), and the lag clears by itself: a commit lost to the rebalances is
made again. So afterwards the database is unchanged (the same rows, to the byte, in every table the pipeline
writes) and every group's lag is 0 within 60 s.
"""
from __future__ import annotations

import random
import time

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

LAG_DEADLINE_SECONDS = 60
# What a replay must leave as it was: (table, the columns that identify and describe each row).
TABLES = {
    "payments": "id, status, status_reason",
    "refunds": "id, payment_id, amount",
    "student_course_purchases": "id, is_active, cancelled_at",
    "trainer_allocations": "id, status, released_at",
    "training_sessions": "id, status, starts_at",
    "processed_events": "consumer, event_id",
    "outbox_events": "id, event_id",
    "pending_retries": "consumer, event_id",
    "dead_letters": "id, status, attempts, last_failed_at",
}


def snapshot() -> dict[str, list]:
    """Per table: its row count and an MD5 of its rows in a fixed order."""
    from django.db import connection

    out = {}
    with connection.cursor() as cursor:
        for table, columns in TABLES.items():
            cursor.execute(f"SELECT count(*), md5(coalesce(string_agg(r::text, ',' ORDER BY r::text), ''))"
                           f" FROM (SELECT {columns} FROM {table}) r")
            out[table] = list(cursor.fetchone())
    return out


def _reset_to_start(group_id: str, topics: tuple[str, ...]) -> None:
    """Commit offset 0 on every partition of the group's topics (the group has no member now)."""
    from workers.kafka import admin_client

    client = admin_client()
    metadata = client.list_topics(timeout=10)
    partitions = [TopicPartition(name, p, 0) for name in topics for p in metadata.topics[name].partitions]
    request = [ConsumerGroupTopicPartitions(group_id, partitions)]
    client.alter_consumer_group_offsets(request)[group_id].result(30)


def total_lag() -> dict[str, int]:
    from workers.health import targets
    from workers.kafka import group_lag

    return {name: sum(group_lag(t.group_id, list(t.topics)).values()) for name, t in targets().items()}


def run(procs, consumers: list[str], note) -> dict:
    """Stop the consumers, reset their groups to 0, run two of each, SIGKILL one of each and start it again;
    wait for lag 0. Returns the phase's figures and checks."""
    from tools.lifecycle import db_retrying
    from workers.health import targets

    before = db_retrying(snapshot)
    for name in consumers:
        procs.stop_one(name)
    groups = targets()
    for name in consumers:
        _reset_to_start(groups[name].group_id, groups[name].topics)
    note("replay every group from offset 0", groups=len(consumers))
    started = time.monotonic()
    for name in consumers:
        procs.start_copy(name, 1)
        procs.start_copy(name, 2)
    time.sleep(4)
    victims = {name: f"{name}#{random.choice((1, 2))}" for name in consumers}
    for victim in victims.values():
        procs.kill(victim)
        note("SIGKILL during the replay", process=victim)
    time.sleep(random.uniform(1.0, 3.0))
    for name, victim in victims.items():
        procs.start_copy(name, int(victim.rsplit("#", 1)[1]))
    lag_zero_after = None
    while time.monotonic() - started < LAG_DEADLINE_SECONDS + 30:
        lags = total_lag()
        if not any(lags.values()):
            lag_zero_after = round(time.monotonic() - started, 1)
            break
        time.sleep(1)
    time.sleep(2)  # a late write would show now
    after = db_retrying(snapshot)
    changed = {table: {"before": before[table], "after": after[table]} for table in TABLES
               if before[table] != after[table]}
    return {
        "lag_zero_after_seconds": lag_zero_after, "lag_left": {} if lag_zero_after else total_lag(),
        "tables_changed": changed, "rows_compared": sum(before[t][0] for t in TABLES),
        "checks": {"replay from 0 left the database unchanged": not changed,
                   f"replay from 0: every group's lag 0 within {LAG_DEADLINE_SECONDS} s":
                       lag_zero_after is not None and lag_zero_after <= LAG_DEADLINE_SECONDS},
    }
