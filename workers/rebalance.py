"""The partition moves of a consumer group, as each member sees them: one INFO log line and one counter per
callback. With cooperative-sticky assignment a rebalance revokes on one member and assigns on another, so the
pause a moved partition sees is the time between its "revoked" line on the old owner and its "assigned" line on
the new one (`bench/scale_out.py` measures exactly that); members whose partitions stay keep consuming.

A line carries `at` (epoch seconds, with microseconds, from the same clock on every process of a host), the
member id the coordinator gave, and the partitions as "topic[partition]"."""
from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, TopicPartition

from workers import metrics

log = logging.getLogger(__name__)


def log_moves(stage: str, consumer: Consumer, event: str, partitions: list[TopicPartition]) -> None:
    """Record that `partitions` were `event` ("assigned", "revoked" or "lost") on this member. An empty list
    (cooperative rebalances call back with one when this member's share is unchanged) is not a move."""
    if not partitions:
        return
    metrics.PARTITIONS_MOVED.labels(stage, event).inc(len(partitions))
    try:
        member = consumer.memberid()
    except RuntimeError:  # closed already
        member = None
    log.info(
        "partitions %s", event,
        extra={"stage": stage, "member": member, "rebalance_event": event, "at": round(time.time(), 6),
               "partitions": [f"{tp.topic}[{tp.partition}]" for tp in partitions]},
    )
