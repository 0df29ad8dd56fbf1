"""Warm a web worker before it takes traffic (gunicorn's post_worker_init hook, enrollment/gunicorn_conf.py).

A cold worker's first requests compile the URL patterns, import the views and create the Kafka producer, which
connects to the broker and obtains its idempotent producer id. Measured at 200 req/s on a fresh `web`: those
first requests took 240-270 ms and the queue behind them 30-90 ms for half a second, while a warm worker answers
in 7 ms (p50) / 20 ms (p99). Database connections are per thread and are opened by each thread's first request
(a few ms).
"""
from __future__ import annotations

import gc
import logging

from confluent_kafka import KafkaException
from django.urls import Resolver404, get_resolver

log = logging.getLogger(__name__)


def warm_up(timeout: float = 5.0) -> None:
    """Resolve the URLs, connect the Kafka producer (and start marking what it publishes as sent), then move every object alive so far (Django, the app, the
    libraries: hundreds of thousands) out of the garbage collector's sight with `gc.freeze()`, so a full
    collection during a request does not walk them all (such pauses showed as 60-70 ms bursts of slow answers)."""
    try:
        get_resolver().resolve("/api/payments/confirmations")
    except Resolver404:
        pass
    from workers.outbox import mark_sent_in_background, publisher

    mark_sent_in_background(publisher())
    try:
        publisher().producer.list_topics(timeout=timeout)
    except KafkaException as exc:  # not fatal: emitted events wait in the outbox until the broker is back
        log.warning("web worker started without a Kafka connection: %s", exc)
    gc.collect()
    gc.freeze()
