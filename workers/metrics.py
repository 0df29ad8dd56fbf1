"""Prometheus metrics of the workers and the outbox. Served by `serve()` on METRICS_PORT when set."""
from __future__ import annotations

import bisect
import collections
import logging
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_PROCESSED = Counter("pipeline_events_processed_total", "Events handled successfully", ["stage"])
EVENTS_SKIPPED = Counter("pipeline_events_skipped_total", "Events already processed by this group", ["stage"])
EVENTS_FAILED = Counter("pipeline_events_failed_total", "Handler failures (before retry)", ["stage", "kind"])
EVENTS_RETRIED = Counter("pipeline_events_retried_total", "Retry attempts scheduled", ["stage"])
EVENTS_DEAD_LETTERED = Counter("pipeline_events_dead_lettered_total", "Events sent to the DLQ", ["stage", "reason"])
BATCH_FALLBACKS = Counter("pipeline_batch_fallbacks_total", "Batches re-run one event at a time", ["stage"])
HANDLE_SECONDS = Histogram(
    "pipeline_batch_seconds", "Time to process one polled batch", ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
END_TO_END_SECONDS = Histogram(
    "pipeline_event_age_seconds", "Age of an event (occurred_at to handled)", ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PENDING_RETRIES = Gauge("pipeline_pending_retries", "Events waiting for a retry", ["stage"])
EVENTS_PARKED = Counter("pipeline_events_parked_total", "Events parked behind an earlier event of their key", ["stage"])
PARKED = Gauge("pipeline_parked_events", "Events waiting behind an earlier event of their key (key order)", ["stage"])
HELD_KEYS = Gauge("pipeline_keys_held_by_dead_letters",
                  "Keys whose events wait behind an unresolved dead letter (key order)", ["stage"])
CONSUMER_LAG = Gauge("pipeline_consumer_lag", "Messages behind the partition end", ["stage", "topic", "partition"])
BREAKER_OPEN = Gauge("pipeline_circuit_open", "1 while the stage's circuit breaker is open (dependency down)",
                     ["stage"])
BREAKER_TRANSITIONS = Counter("pipeline_circuit_transitions_total", "Breaker state changes", ["stage", "state"])
EVENTS_DROPPED = Counter("pipeline_events_dropped_total",
                         "Events given up on by a stage whose dead-letter policy is log-and-count", ["stage", "reason"])
EVENTS_SUPERSEDED = Counter("pipeline_events_superseded_total",
                            "Events skipped because what they name was undone meanwhile", ["stage", "event_type"])
OUTBOX_SENT = Counter("pipeline_outbox_sent_total", "Outbox rows confirmed by the broker")
OUTBOX_PUBLISH_FAILED = Counter("pipeline_outbox_publish_failed_total", "Outbox deliveries that failed")
STAGE_PAUSED = Gauge("pipeline_stage_paused", "1 while the stage is paused (stop-the-line or an operator)", ["stage"])
COMMIT_FAILURES = Counter("pipeline_offset_commit_failures_total",
                          "Offset commits that failed (and are retried until they succeed or the partition goes)",
                          ["stage"])
DEAD_LETTERS_CUT = Counter("pipeline_dead_letters_cut_total",
                           "Dead letters whose copy was cut to fit the broker's limit", ["stage"])
DEAD_LETTERS_STORED = Counter("pipeline_dead_letters_stored_total", "DLQ messages stored as DeadLetter rows")
PARTITIONS_MOVED = Counter("pipeline_partitions_moved_total",
                           "Partitions assigned to, revoked from or lost by this member (workers.rebalance)",
                           ["stage", "event"])
LANES_IN_USE = Gauge("pipeline_consumer_lanes",
                     "Lanes the consumer splits a batch into now (1 while the machine has no core to spare)", ["stage"])
LAST_POLL = Gauge("pipeline_last_poll_timestamp_seconds", "When the consumer last polled", ["stage"])

_served = False


def serve(port: int) -> None:
    """Serve /metrics on settings.METRICS_ADDR:port (loopback by default; 0.0.0.0 in containers)."""
    global _served
    if port and not _served:
        from django.conf import settings

        try:
            start_http_server(port, addr=settings.METRICS_ADDR)
        except OSError as exc:  # a second copy on one host: it consumes all the same, without an endpoint
            logging.getLogger(__name__).error(
                "metrics port %s cannot be served (%s); this process serves no metrics: give each copy on a host "
                "its own --metrics-port", port, exc)
            return
        _served = True


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(a)` for each amount (a labelled child), with one increment per bucket hit and one of the
    sum. observe() takes a value's lock twice per amount, and under PROMETHEUS_MULTIPROC_DIR writes a memory-mapped
    file twice: 2 us per event of every stage's Python (py-spy), against 0.2 here. It uses the histogram's
    attributes as prometheus_client 0.26 (requirements.txt) has them; tests/workers/test_metrics.py checks the
    samples are those of observe()."""
    if not amounts:
        return
    histogram._raise_if_not_observable()
    bounds = histogram._upper_bounds  # ascending, the last one +Inf; observe() counts a in the first bound >= a
    hits = collections.Counter(bisect.bisect_left(bounds, amount) for amount in amounts)
    histogram._sum.inc(sum(amounts))
    for index, count in hits.items():
        histogram._buckets[index].inc(count)
