"""Warm a web worker before it takes traffic (gunicorn's post_worker_init hook, settings/gunicorn.py).

A cold worker's first requests compile the URL patterns, import the views and create the Kafka producer, which
connects to the broker and obtains its idempotent producer id. Measured at 200 req/s on a fresh `web`: those
first requests took 240-270 ms and the queue behind them 30-90 ms for half a second, while a warm worker answers
in 7 ms (p50) / 20 ms (p99). Database connections are per thread: each of the worker's threads opens its own
before traffic too (a new PostgreSQL backend also loads its catalog caches on its first queries), which removed
the last burst of 30-70 ms answers in the first 0.1 s of load.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor

from confluent_kafka import KafkaException
from django.db import connection
from django.urls import Resolver404, get_resolver

from workers.loop import tune_gc

log = logging.getLogger(__name__)


def warm_up(timeout: float = 5.0) -> None:
    """Resolve the URLs, connect the Kafka producer (lingering WEB_KAFKA_LINGER_MS: a worker publishes one event
    per request, and gathers them) and start marking what it publishes as sent, then move
    every object alive so far (Django, the app, the libraries: hundreds of thousands) out of the garbage
    collector's sight with `gc.freeze()`, so a full collection during a request does not walk them all (such
    pauses showed as 60-70 ms bursts of slow answers), and collect young objects less often
    (workers.loop.tune_gc)."""
    try:
        get_resolver().resolve("/api/payments/confirmations")
    except Resolver404:
        pass
    from django.conf import settings

    from workers.outbox import mark_sent_in_background, publisher

    mark_sent_in_background(publisher(**{"linger.ms": settings.WEB_KAFKA_LINGER_MS}))
    try:
        publisher().producer.list_topics(timeout=timeout)
    except KafkaException as exc:  # not fatal: emitted events wait in the outbox until the broker is back
        log.warning("web worker started without a Kafka connection: %s", exc)
    tune_gc()


# Plans the webhook's statements once, so the new backend has the tables and indexes in its caches.
WARM_SQL = (
    "SELECT (SELECT id FROM payments WHERE provider_payment_id = ''), EXISTS (SELECT 1 FROM students WHERE id = 0),"
    " EXISTS (SELECT 1 FROM courses WHERE id = 0), EXISTS (SELECT 1 FROM outbox_events WHERE id = 0)"
)


def warm_threads(pool: Executor, threads: int, timeout: float = 10.0) -> None:
    """Open a database connection in each of the pool's `threads` threads (a barrier makes every task take its
    own thread). A failure is logged: the thread then connects on its first request, as it would anyway."""
    barrier = threading.Barrier(threads)

    def connect() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(WARM_SQL)
        finally:
            barrier.wait(timeout)

    for future in [pool.submit(connect) for _ in range(threads)]:
        try:
            future.result(timeout)
        except Exception as exc:
            log.warning("web worker thread started without a database connection: %s", exc)
