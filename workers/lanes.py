"""A polled batch in several transactions side by side: its events split into lanes by key, each lane processed on
its own thread and database connection.

Why: one lane spends half its time waiting for PostgreSQL (the statements, the commit's WAL flush) and the other
half in Python; on the machine's second core PostgreSQL can run another lane's statements meanwhile, and
psycopg releases the GIL while it waits. Measured on the purchases stage (20,000 events, bench/reference.py):
docs/benchmarks.md.

What stays as it was:
- Order: the lane of an event is decided by its key, so one key's events (of every topic of the stage) are in one
  lane, in their order; the key-order checks of workers.processing see them together. Key order is the order the
  pipeline promises (workers.stage.Ordering); events of different keys in one partition may commit in either
  order, as they may across partitions. An event without a key goes by its partition number.
- Exactly once: each lane is Processor.process() on its share (claims, handler, outbox, retries, dead letters
  in its own transactions). The offsets are committed only after every lane returned; if any lane raised, the
  caller rewinds the whole batch, and what the other lanes committed is skipped by its ProcessedEvent rows.
- The calling thread runs the first lane itself; retries, chores and the Kafka client stay on it.

Why by key and not by partition (as until 2026-12-07): librdkafka hands a consumer each partition's fetched chunk
whole (up to 1 MiB, some 3,000 events), so a polled batch of 500 nearly always came from one partition and had
nothing to split. Splitting by partition needed 64 KiB chunks, and the extra fetches cost the whole pipeline
some 4% end to end (bench/analysis.md). The lane is Python's hash of the key, not its CRC32: librdkafka's
default partitioner is the CRC32 of the key modulo the partition count, so with an even count every key of one
partition has the same CRC32 parity, and a batch from one partition would again go to one lane.

Lanes cost CPU (each pays its own statements and commit), so a batch is split only while the rest of the machine
leaves an idle core to run the second lane on (workers.headroom); otherwise it runs as one lane.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections, connection

from workers import metrics
from workers.dead_letters import SourceMessage
from workers.headroom import Headroom
from workers.loop import reset_db_connection


def split(sources: Sequence[SourceMessage], lanes: int) -> list[list[SourceMessage]]:
    """At most `lanes` groups, each in consumption order; one key's messages (a keyless one's partition number)
    all in one group. Empty groups are left out."""
    if lanes < 2:
        return [list(sources)]
    groups: list[list[SourceMessage]] = [[] for _ in range(lanes)]
    for source in sources:
        groups[hash(source.key if source.key is not None else source.partition) % lanes].append(source)
    return [group for group in groups if group] or [[]]


def _in_lane(process: Callable[[list[SourceMessage]], None], group: list[SourceMessage]) -> None:
    close_old_connections()  # this thread's connection: past CONN_MAX_AGE, or broken by an earlier failure
    try:
        process(group)
    except BaseException:
        reset_db_connection()
        raise


class Lanes:
    def __init__(self, lanes: int, name: str, headroom: Headroom | None = None,
                 min_events: int | None = None) -> None:
        self.lanes = max(1, lanes)
        self.min_events = max(1, min_events if min_events is not None else settings.WORKER_LANE_MIN_EVENTS)
        self._pool = (ThreadPoolExecutor(max_workers=self.lanes - 1, thread_name_prefix=f"{name}-lane")
                      if self.lanes > 1 else None)
        self.headroom = headroom or Headroom(settings.WORKER_LANES_BUSY_LIMIT, settings.WORKER_LANES_RESUME_BELOW)
        self._in_use = metrics.LANES_IN_USE.labels(name)
        self._in_use.set(self.lanes)

    def lanes_for(self, events: int) -> int:
        """How many lanes a batch of `events` may use: while the machine has a core to spare, as many as give each
        lane `min_events` (at most `lanes`); else one. A small batch (a moderate load's) is not split: it is quick
        anyway, and each lane pays its own transaction. What a transaction costs the machine beyond its events,
        from `make bench`'s one-event-per-transaction runs (07:36): purchases 2.1 ms, allocations 7.9 (its API
        call), sessions 5.9, cache 0.8. Over `make demo`'s 1,000 payments at some 110/s (batches of about 20,
        some 55 per stage), splitting every batch is about 0.9 s of machine CPU in the demo's 14-15 s; the
        demo's own totals are too noisy to show it (13.5-18.1 s over nine runs, split or not)."""
        lanes = 1
        if self.lanes > 1 and events >= 2 * self.min_events and self.headroom.has_spare():
            lanes = min(self.lanes, events // self.min_events)
        self._in_use.set(lanes)
        return lanes

    def run(self, process: Callable[[list[SourceMessage]], None], sources: Sequence[SourceMessage]) -> None:
        """process() each lane's share; returns when all are done, raising the first lane's error if any."""
        try:
            self._run(process, split(sources, self.lanes_for(len(sources))))
        finally:
            self.headroom.batch_done()

    def _run(self, process: Callable[[list[SourceMessage]], None], groups: list[list[SourceMessage]]) -> None:
        if len(groups) < 2 or self._pool is None:  # one lane: split() made one group
            process(groups[0])
            return
        futures = [self._pool.submit(_in_lane, process, group) for group in groups[1:]]
        error: BaseException | None = None
        try:
            process(groups[0])
        except BaseException as exc:
            error = exc
        for future in futures:
            try:
                future.result()
            except BaseException as exc:
                error = error or exc
        if error is not None:
            raise error

    def close(self) -> None:
        """Close each lane thread's database connection, then the threads."""
        if self._pool is None:
            return
        workers = self.lanes - 1
        barrier = threading.Barrier(workers)

        def close_connection() -> None:
            connection.close()
            barrier.wait(5)  # every thread takes one of these tasks

        for future in [self._pool.submit(close_connection) for _ in range(workers)]:
            try:
                future.result(10)
            except Exception:  # a broken barrier or connection: the process is going anyway
                pass
        self._pool.shutdown(wait=True)
