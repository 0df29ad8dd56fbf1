"""Shared pieces of the benchmarks: a fresh database and topic namespace per run, Django set-up, timing."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The maintenance database of the same server as DATABASE_URL (or the local stack's).
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL") or (
    os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:15432/enrollment").rsplit("/", 1)[0] + "/postgres"
)
DATABASE = os.environ.get("BENCH_DATABASE", "enrollment_bench")


def database_url(name: str) -> str:
    """The URL of database `name` on the same server as ADMIN_URL."""
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def fresh_database(name: str = DATABASE) -> str:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def setup(prefix: str) -> dict[str, str]:
    """Point this process at a fresh bench database and topic prefix, set Django up, migrate. Returns the env
    to give subprocesses."""
    env = {
        "DATABASE_URL": fresh_database(),
        "KAFKA_TOPIC_PREFIX": prefix,
        "CACHE_KEY_PREFIX": prefix,
        "DJANGO_SETTINGS_MODULE": "settings",
        "LOG_LEVEL": "WARNING",
        "KAFKA_TOPIC_PARTITIONS": os.environ.get("KAFKA_TOPIC_PARTITIONS", "6"),
    }
    os.environ.update(env)
    from settings.local_secrets import load_into_environ

    load_into_environ()  # this checkout's secrets, unless the environment has its own (DEBUG is off)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("create_topics", stdout=open(os.devnull, "w"))
    return {**os.environ, **env}


def use_prefix(prefix: str) -> None:
    """Switch this process (and what it starts) to another topic namespace, creating its topics."""
    from django.conf import settings

    from workers.kafka import create_topics

    os.environ["KAFKA_TOPIC_PREFIX"] = prefix
    settings.KAFKA_TOPIC_PREFIX = prefix
    create_topics()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Seconds until condition() held; raises after timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not done after {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start


def machine() -> dict[str, str]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.splitlines()[1].split()[1]
    return {
        "cpu": cpu, "cores": str(os.cpu_count()), "memory_gb": mem, "os": platform.platform(),
        "python": platform.python_version(),
    }


def bulk_producer(topic_name: str | None = None) -> Producer:
    """The load generator's producer: record batches of at most 64 KiB (about 200 events), as the pipeline's own
    producers write its topics (a stage publishes a committed batch of 500 over 6 partitions: about 80 per
    partition; the webhook one at a time), not the 1 MiB a bulk loader would: a consumer fetches whole record
    batches, so their size decides how many partitions one polled batch spans.

    Made before a timed phase, with `topic_name`'s metadata asked for at once, it is ready when the clock starts:
    an idempotent producer sends nothing until the broker has given it a producer id, and a fresh one sat idle
    0.4 s of the end-to-end run's first 0.6 s waiting for that id and the topic's metadata."""
    from workers.kafka import make_producer

    producer = make_producer(**{"linger.ms": 20, "batch.num.messages": 10000, "batch.size": 65_536,
                                "queue.buffering.max.messages": 500000})
    if topic_name is not None:
        producer.list_topics(topic_name, timeout=10)
    return producer


def produce_values(topic_name: str, items: list[tuple[bytes, bytes]], producer: Producer | None = None) -> float:
    """Produce (key, value) pairs as fast as the client goes (with `bulk_producer`'s batches); returns seconds."""
    producer = producer if producer is not None else bulk_producer()
    start = time.perf_counter()
    for i, (key, value) in enumerate(items):
        producer.produce(topic_name, key=key, value=value)
        if i % 5000 == 0:
            producer.poll(0)
    producer.flush(60)
    return time.perf_counter() - start


def quiet_database(timeout: float = 90.0) -> float:
    """Wait until PostgreSQL has no autovacuum worker running, VACUUM (ANALYZE) the bench database, then
    CHECKPOINT: a measured phase then pays for its own background work, not for the vacuum and the dirty pages the
    phase before it left (the webhook's figures after the stage benchmarks were up to twice those of a run on its
    own). Waiting alone left the vacuums that were due but not yet started: the launcher wakes once a minute, and
    one landed inside an end-to-end run of 6 s (vacuums of 8 tables, PostgreSQL's CPU per purchase 0.244 ms against
    0.189-0.192 in the runs beside it). Returns the seconds waited."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            [(running,)] = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'").fetchall()
            if not running:
                break
            time.sleep(0.5)
    vacuum()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return round(time.monotonic() - started, 1)


def vacuum() -> float | None:
    """VACUUM (ANALYZE) the bench database. Returns the CPU seconds its backend spent, read from /proc (None when
    PostgreSQL runs on another machine)."""
    import psycopg

    from bench.cpu import process_seconds

    with psycopg.connect(database_url(DATABASE), autocommit=True) as conn:
        [(pid,)] = conn.execute("SELECT pg_backend_pid()").fetchall()
        before = process_seconds(pid)
        conn.execute("VACUUM (ANALYZE)")
        after = process_seconds(pid)
    return round(after - before, 3) if before is not None and after is not None else None


def drop_topics(prefix: str = "bench-", keep: str | None = None, timeout: float = 60.0) -> int:
    """Delete the broker's topics whose names start with `prefix` (the benchmarks' own: every phase makes a fresh
    set). Each partition costs the broker heap for as long as it exists: a day of runs left over 5,000 partitions
    and a broker of 760 MiB, against 650 MiB after one run; the memory figure is the pipeline's, not the leftovers'.
    Topics starting with `keep` stay, and so do their ACLs; the others' go with them. Returns how many topics were
    deleted."""
    from workers import kafka_acls
    from workers.kafka import admin_client

    client = admin_client()
    names = [name for name in client.list_topics(timeout=timeout).topics
             if name.startswith(prefix) and not (keep and name.startswith(keep))]
    for future in (client.delete_topics(names, operation_timeout=timeout).values() if names else []):
        try:
            future.result()
        except Exception as exc:  # already gone (a concurrent delete): fine
            if "UNKNOWN_TOPIC" not in str(exc):
                raise
    kafka_acls.remove(client, prefix, timeout, keep=keep)
    return len(names)
