"""The consume loop's offset commits: asynchronous after each batch, made again until they succeed, synchronous
when partitions leave.

Why asynchronous: a synchronous commit waited 1.7-2.0 ms for the group coordinator after every batch of 500 (the
purchases stage spends about 40 ms per batch), and nothing else ran on the loop meanwhile. An asynchronous commit
is sent at once and the loop polls the next batch; the coordinator's answer comes back through `on_committed`
during a later poll. Exactly once does not rest on offsets (each event's ProcessedEvent row does); a commit only
says where a new owner starts reading, so it never has to be waited for, except when the partitions go:
- a revoke (a rebalance, or `close()`) commits what is done on the leaving partitions synchronously, while this
  consumer still owns them, so the next owner starts after it;
- a commit refused (during a rebalance: ILLEGAL_GENERATION, NOT_COORDINATOR, REBALANCE_IN_PROGRESS; or while the
  coordinator moves) is kept and sent again on every chores tick until it succeeds or its partition is revoked or
  lost. Otherwise a partition that gets no further message would keep its lag for good, and worker_health would
  page for a healthy group.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from workers import metrics

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> the next offset to read


class OffsetCommits:
    def __init__(self, stage_name: str, consumer: Callable[[], Consumer], on_success: Callable[[], None]) -> None:
        """`consumer`: the stage's consumer, asked for at each use (it is created with `on_committed` as its
        callback, so after this)."""
        self.stage_name = stage_name
        self._consumer = consumer
        self._on_success = on_success
        self._done: Offsets = {}  # handled; committed or not
        self._acknowledged: Offsets = {}  # what the coordinator confirmed
        self._refused: Offsets = {}  # done, but their commit failed: sent again on `again()`

    def batch_done(self, next_offsets: Offsets) -> None:
        """A batch is durable (handled, parked or dead-lettered): commit its offsets without waiting."""
        for tp, offset in next_offsets.items():
            self._done[tp] = max(self._done.get(tp, 0), offset)
        self._send(next_offsets, wait=False)

    def again(self) -> None:
        """Commit the refused offsets again, for the partitions this consumer still owns."""
        if not self._refused:
            return
        owned = {(tp.topic, tp.partition) for tp in self._consumer().assignment()}
        for tp in [tp for tp in self._refused if tp not in owned]:
            del self._refused[tp]  # revoked or lost: its new owner re-reads from the last commit and skips
        if self._refused:
            self._send(dict(self._refused), wait=False)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions are leaving (still owned here): commit what is done on them and not confirmed, and wait."""
        going = {(tp.topic, tp.partition) for tp in partitions}
        pending = {tp: offset for tp, offset in self._done.items()
                   if tp in going and offset > self._acknowledged.get(tp, -1)}
        if pending:
            self._send(pending, wait=True)
        self._forget(going)

    def lost(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions lost without a revoke (session timed out): they cannot be committed any more."""
        self._forget({(tp.topic, tp.partition) for tp in partitions})

    def on_committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's offset-commit callback (`on_commit`), served during poll: the coordinator's answer."""
        refused = {}
        for tp in partitions:
            key, why = (tp.topic, tp.partition), error or tp.error
            if why is not None:
                refused[key] = tp.offset
            elif tp.offset >= 0:
                self._confirmed({key: tp.offset})
        if refused:
            self._failed(refused, KafkaException(error or next(tp.error for tp in partitions if tp.error)))

    def _send(self, offsets: Offsets, *, wait: bool) -> None:
        try:
            self._consumer().commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=not wait)
        except KafkaException as exc:  # refused at once (a synchronous commit, or no coordinator known)
            self._failed(offsets, exc)
            return
        if wait:
            self._confirmed(offsets)

    def _confirmed(self, offsets: Offsets) -> None:
        for tp, offset in offsets.items():
            self._acknowledged[tp] = max(self._acknowledged.get(tp, -1), offset)
            if self._refused.get(tp, 0) <= offset:
                self._refused.pop(tp, None)
        self._on_success()

    def _failed(self, offsets: Offsets, exc: KafkaException) -> None:
        metrics.COMMIT_FAILURES.labels(self.stage_name).inc()
        log.warning("offset commit failed; it will be retried: %s", exc, extra={"stage": self.stage_name})
        for tp, offset in offsets.items():
            if offset > self._acknowledged.get(tp, -1):  # an answer to an older commit than one confirmed: moot
                self._refused[tp] = max(self._refused.get(tp, 0), offset)

    def _forget(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            for offsets in (self._done, self._acknowledged, self._refused):
                offsets.pop(tp, None)
