"""`observe_many` records what `observe()` would, one amount at a time: the same buckets, count and sum."""
import math

import pytest
from prometheus_client import CollectorRegistry, Histogram

from workers.metrics import observe_many

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
AMOUNTS = [0, 0.01, 0.010001, 0.05, 0.07, 1, 1.5, 299.9, 300, 300.1, 1e9, 0.0, 2.5, 2.5, 2.5000001]


def _samples(record) -> list[tuple[str, dict, float]]:
    registry = CollectorRegistry()
    histogram = Histogram("age_seconds", "age", ["stage"], buckets=BUCKETS, registry=registry)
    record(histogram.labels("purchases"))
    return [(s.name, s.labels, s.value) for metric in registry.collect() for s in metric.samples
            if not s.name.endswith("_created")]


@pytest.mark.parametrize("amounts", [AMOUNTS, AMOUNTS[:1], [], [math.inf], list(reversed(AMOUNTS))])
def test_observe_many_records_what_observe_records_one_at_a_time(amounts):
    def one_at_a_time(child):
        for amount in amounts:
            child.observe(amount)

    assert _samples(lambda child: observe_many(child, amounts)) == _samples(one_at_a_time)
