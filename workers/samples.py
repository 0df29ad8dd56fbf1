"""What each consumer process sees of its stage, every SAMPLE_SECONDS: the Prometheus gauges (pending retries,
parked events, held keys, lag per partition) and one StageSample row, the pipeline console's history
(workers/console.py). A row costs one INSERT per process every 5 s; each process deletes its stage's rows past
SAMPLE_RETENTION now and then, so the table stays at about an hour of history."""
from __future__ import annotations

import datetime
import itertools
import os
import socket
import time

from confluent_kafka import Consumer
from django.utils import timezone

from workers import metrics, ordering
from workers.models import StageSample
from workers.stage import Stage

SAMPLE_SECONDS = 5.0
SAMPLE_RETENTION = datetime.timedelta(hours=1)
PRUNE_EVERY = 60  # samples: every 5 minutes
_instances = itertools.count(1)


def member_name() -> str:
    """host:pid, with /N when one process runs several consumers (tests do)."""
    n = next(_instances)
    return f"{socket.gethostname()}:{os.getpid()}" + (f"/{n}" if n > 1 else "")


class SampleRecorder:
    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.member = member_name()
        self._since = time.monotonic()
        self._processed = 0
        self._last_commit_at: datetime.datetime | None = None
        self._written = 0

    def handled(self, count: int) -> None:
        self._processed += count

    def committed(self) -> None:
        self._last_commit_at = timezone.now()

    def due(self) -> bool:
        return time.monotonic() - self._since >= SAMPLE_SECONDS

    def record(self, consumer: Consumer, *, breaker: str, paused: bool) -> None:
        """Set the gauges and write a sample of the time since the last one."""
        now = time.monotonic()
        seconds, self._since = now - self._since, now
        processed, self._processed = self._processed, 0
        waiting = ordering.counts(self.stage.group_id)
        metrics.PENDING_RETRIES.labels(self.stage.name).set(waiting.retrying)
        metrics.PARKED.labels(self.stage.name).set(waiting.parked)
        metrics.HELD_KEYS.labels(self.stage.name).set(waiting.held_keys)
        assignment = consumer.assignment()
        lag = 0
        for tp in consumer.position(assignment) if assignment else []:
            # A paused partition fetches nothing, so its cached end offset stands still: ask the broker then.
            _, high = consumer.get_watermark_offsets(tp, cached=not paused, timeout=2) or (0, 0)
            if tp.offset >= 0:
                behind = max(high - tp.offset, 0)
                metrics.CONSUMER_LAG.labels(self.stage.name, tp.topic, tp.partition).set(behind)
                lag += behind
        StageSample.objects.create(
            stage=self.stage.name, member=self.member, at=timezone.now(), seconds=round(seconds, 3),
            processed=processed, lag=lag, partitions=len(assignment), breaker=breaker, paused=paused,
            last_commit_at=self._last_commit_at)
        self._written += 1
        if self._written % PRUNE_EVERY == 1:
            StageSample.objects.filter(stage=self.stage.name, at__lt=timezone.now() - SAMPLE_RETENTION).delete()
