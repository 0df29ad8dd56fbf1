"""The physical references, measured in the same run as the pipeline: what the broker and PostgreSQL can do
on this machine at all, so the pipeline's figures can be read as ratios."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
INSERT_SCRIPT = """\\set uid random(1, 100000)
\\set item random(1, 1000)
INSERT INTO bench_purchase (idempotency_key, user_id, item_id, amount) VALUES (gen_random_uuid(), :uid, :item, 9.99);
"""


def kafka_raw(messages: int = 100_000, size: int = 300) -> dict[str, float]:
    """confluent-kafka produce (idempotent, acks=all) and consume (batches of 500, one sync commit each)."""
    from confluent_kafka import Consumer

    from bench.common import produce_values
    from workers.kafka import base_config, create_topics

    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    create_topics([name])
    payload = b"x" * size
    seconds = produce_values(name, [(str(i % 1000).encode(), payload) for i in range(messages)])
    consumer = Consumer({**base_config(), "group.id": name, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([name])
    got, start = 0, None
    while got < messages:
        batch = consumer.consume(500, timeout=1)
        if batch and start is None:
            start = time.perf_counter()
        got += sum(1 for m in batch if not m.error())
        if batch:
            consumer.commit(asynchronous=False)
    consume_seconds = time.perf_counter() - start
    consumer.close()
    return {"produce_per_second": round(messages / seconds), "consume_per_second": round(messages / consume_seconds)}


def pgbench_inserts(seconds: int = 10, clients: int = 4) -> dict[str, float]:
    """Single-row INSERT transactions per second (synchronous commit) on the same PostgreSQL."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = {**os.environ, "PGHOST": db["HOST"], "PGPORT": str(db["PORT"]), "PGUSER": db["USER"],
           "PGDATABASE": db["NAME"]}
    subprocess.run(["psql", "-q", "-c", "CREATE TABLE IF NOT EXISTS bench_purchase (id bigserial PRIMARY KEY, "
                    "idempotency_key uuid NOT NULL UNIQUE, user_id int, item_id int, amount numeric(12,2), "
                    "created_at timestamptz DEFAULT now())"], env=env, check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(INSERT_SCRIPT)
    out = subprocess.run([PGBENCH, "-n", "-f", script.name, "-c", str(clients), "-j", "2", "-T", str(seconds)],
                         env=env, capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
    subprocess.run(["psql", "-q", "-c", "DROP TABLE bench_purchase"], env=env, check=True)
    return {"insert_tps": round(tps), "clients": clients}


def between_pgbench_runs(measure: Callable[[], T]) -> tuple[T, dict[str, int]]:
    """`measure()` with a pgbench run just before and just after it, each from a quiet database (no autovacuum,
    a fresh checkpoint), and their mean as the reference for it.

    The speed of these machines drifts by a third within minutes for the same code: the pgbench figure taken at the
    start of `make bench` read 7,205-9,649 tps in one afternoon, and the end-to-end run comes minutes after it. A
    ratio holds only against a reference taken beside what it divides; the start-of-run figure stays in the results
    as the physical reference of the stage table."""
    from bench.common import quiet_database

    quiet_database()
    before = pgbench_inserts()["insert_tps"]
    result = measure()
    quiet_database()
    after = pgbench_inserts()["insert_tps"]
    return result, {"before": before, "after": after, "insert_tps": round((before + after) / 2)}
