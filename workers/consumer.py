"""The consume loop every stage shares: poll a batch -> process it -> commit its offsets; run due retries; keep
polling while a dependency is down (partitions paused), so the group never evicts the consumer.

Commit policy: a batch's offsets are committed once per batch, only after `Processor.process()` returned, i.e.
after every event of the batch is committed in PostgreSQL (handled, parked for a retry) or acknowledged by the
broker on the dead-letter topic; asynchronously, and synchronously when partitions leave (workers.offsets says why
and how a refused commit is made again). If processing raises (the database or the broker is down), the batch is
rewound (seek to its first offsets) and polled again after a short pause: nothing is lost, and what already
committed is skipped by its ProcessedEvent row.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from django.conf import settings
from django.db import close_old_connections

from workers import line, metrics, rebalance
from workers.dead_letters import DeadLetterPublisher, SourceMessage
from workers.kafka import make_consumer, make_producer
from workers.lanes import Lanes
from workers.line import LineStopped
from workers.loop import StopFlag, reset_db_connection, run_until_stopped, tune_gc
from workers.offsets import OffsetCommits
from workers.outbox import mark_sent_in_background, publisher
from workers.processing import Processor
from workers.retry import Backoff, CircuitBreaker
from workers.samples import SampleRecorder
from workers.stage import Stage

log = logging.getLogger(__name__)
# Due retries and the outbox's "sent" marks are looked at this often, not on every poll: each look is a query,
# which would otherwise cost more than handling a single event.
CHORES_EVERY_SECONDS = 0.25
# How often a consumer reads whether its stage is paused (workers.line): every consumer obeys within this.
PAUSE_CHECK_SECONDS = 1.0


def _source(msg: Message) -> SourceMessage:
    return SourceMessage(
        topic=msg.topic(), partition=msg.partition(), offset=msg.offset(), key=msg.key(), value=msg.value(),
        headers=list(msg.headers() or []),
    )


class StageConsumer:
    def __init__(
        self,
        stage: Stage,
        *,
        batch_size: int | None = None,
        batch_wait: float | None = None,
        consumer_config: dict | None = None,
        breaker: CircuitBreaker | None = None,
        lanes: int | None = None,
    ) -> None:
        self.stage = stage
        self.batch_size = batch_size or settings.WORKER_BATCH_SIZE
        self.batch_wait = batch_wait if batch_wait is not None else settings.WORKER_BATCH_WAIT_SECONDS
        self.lanes = Lanes(lanes or settings.WORKER_LANES, stage.name)
        self.samples = SampleRecorder(stage)
        self.offsets = OffsetCommits(stage.name, lambda: self.consumer, on_success=self.samples.committed)
        self.consumer = make_consumer(stage.kafka_group_id(), on_commit=self.offsets.on_committed,
                                      **(consumer_config or {}))
        self.producer = make_producer()
        self.breaker = breaker or CircuitBreaker(stage.name)
        self.processor = Processor(
            stage,
            backoff=Backoff(settings.RETRY_BASE_SECONDS, settings.RETRY_MAX_SECONDS),
            breaker=self.breaker,
            dead_letters=DeadLetterPublisher(self.producer),
        )
        self.stop = StopFlag(stage.name)
        self._paused = False
        self._infra_failures = 0
        self._chores_at = 0.0
        self._stage_paused = False  # a StagePause row exists for the stage (workers.line)
        self._pause_checked_at = -PAUSE_CHECK_SECONDS
        self._marker: tuple[threading.Thread, threading.Event] | None = None
        self.consumer.subscribe(stage.topic_names(), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, *, should_stop: Callable[[], bool] | None = None) -> None:
        """Poll until SIGTERM/SIGINT (or `should_stop()`), then finish the batch, commit and close."""
        self.begin()
        try:
            run_until_stopped(lambda: self.poll_once() > 0, stop=self.stop, should_stop=should_stop)
        finally:
            self.close()

    def begin(self) -> None:
        """What `run()` does before its first poll (the bench's timed loop calls it too): the process's GC policy
        (workers.loop.tune_gc), and the published outbox rows marked sent from a thread with its own database
        connection, as a web worker does, instead of between polls: the UPDATE then runs on another PostgreSQL
        backend beside the next batch's transaction (0.6 s of the purchases stage's 8 s per 20,000 events,
        measured). A test that drives `poll_once()` itself marks them in the loop."""
        tune_gc()
        if self._marker is None:
            stop = threading.Event()
            self._marker = (mark_sent_in_background(publisher(), stop=stop), stop)

    @property
    def stop_requested(self) -> bool:
        return self.stop.requested

    def install_signal_handlers(self) -> None:
        self.stop.install()

    def poll_once(self) -> int:
        """One iteration: poll a batch, process and commit it, run due retries. Returns messages polled."""
        close_old_connections()
        self._check_stage_pause()
        self._set_paused(self._stage_paused or not self.breaker.allows_work())
        messages = self.consumer.consume(num_messages=self.batch_size, timeout=self.batch_wait)
        metrics.LAST_POLL.labels(self.stage.name).set_to_current_time()
        sources = []
        for msg in messages:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", msg.error(), extra={"stage": self.stage.name})
                continue
            sources.append(_source(msg))
        if sources and self._process(sources):
            self._commit(sources)
            self.samples.handled(len(sources))
        if self.processor.line.stopped is not None:
            self._stop_the_line(self.processor.line.stopped)
        now = time.monotonic()
        if now - self._chores_at >= CHORES_EVERY_SECONDS or self.breaker.wants_probe:
            self._chores_at = now
            self.offsets.again()
            if not self._stage_paused:
                self._retries()
                if self.processor.line.stopped is not None:
                    self._stop_the_line(self.processor.line.stopped)
            self._housekeeping()
        return len(sources)

    def _process(self, sources: list[SourceMessage]) -> bool:
        started = time.perf_counter()
        try:
            self.lanes.run(self.processor.process, sources)
        except LineStopped:  # its invalid messages would pass the limit: none was written; read them again later
            self._rewind(sources)
            return False
        except Exception:
            self._infra_failures += 1
            pause = min(0.2 * 2 ** self._infra_failures, 5.0)
            log.exception("batch could not be made durable; rewinding it", extra={"stage": self.stage.name,
                                                                                   "pause_seconds": pause})
            self._rewind(sources)
            reset_db_connection()
            time.sleep(pause)
            return False
        self._infra_failures = 0
        metrics.HANDLE_SECONDS.labels(self.stage.name).observe(time.perf_counter() - started)
        return True

    def _commit(self, sources: list[SourceMessage]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for s in sources:
            next_offsets[(s.topic, s.partition)] = max(next_offsets.get((s.topic, s.partition), 0), s.offset + 1)
        self.offsets.batch_done(next_offsets)

    def _on_assign(self, consumer, partitions: list[TopicPartition]) -> None:
        """New partitions. While the stage is paused (or its breaker open) they are assigned here and paused at
        once, so that the poll that joined the group hands out none of their messages."""
        rebalance.log_moves(self.stage.name, consumer, "assigned", partitions)
        if self._paused and partitions:
            consumer.incremental_assign(partitions)  # done here, confluent-kafka does not assign them again
            consumer.pause(partitions)

    def _on_revoke(self, consumer, partitions: list[TopicPartition]) -> None:
        """Partitions are being taken away: commit what is done on them first (still their owner here)."""
        rebalance.log_moves(self.stage.name, consumer, "revoked", partitions)
        self.offsets.revoked(partitions)

    def _on_lost(self, consumer, partitions: list[TopicPartition]) -> None:
        """Partitions lost without a revoke (session timed out): they cannot be committed any more."""
        rebalance.log_moves(self.stage.name, consumer, "lost", partitions)
        self.offsets.lost(partitions)

    def _rewind(self, sources: list[SourceMessage]) -> None:
        first: dict[tuple[str, int], int] = {}
        for s in sources:
            first[(s.topic, s.partition)] = min(first.get((s.topic, s.partition), s.offset), s.offset)
        for (t, p), offset in first.items():
            try:
                self.consumer.seek(TopicPartition(t, p, offset))
            except KafkaException as exc:  # partition revoked meanwhile: its new owner starts from the commit
                log.warning("rewind failed: %s", exc, extra={"stage": self.stage.name})

    def _retries(self) -> None:
        try:
            if self.breaker.wants_probe:
                self.processor.probe()
            else:
                self.processor.run_due()
        except LineStopped:  # the row rolled back: it waits, unchanged, for the resume
            pass
        except Exception:
            log.exception("running retries failed", extra={"stage": self.stage.name})
            reset_db_connection()

    def _stop_the_line(self, why: str) -> None:
        """Pause the stage for every consumer of the group; this one at once."""
        self._stage_paused = True
        metrics.STAGE_PAUSED.labels(self.stage.name).set(1)
        try:
            line.pause(self.stage.name, reason=f"stop-the-line: {why}", actor=line.LINE_STOPPER, automatic=True)
        except Exception:  # the database is down: this consumer stays paused and writes the pause next time
            log.exception("could not store the stage's pause", extra={"stage": self.stage.name})
            reset_db_connection()
            return
        self.processor.line.stopped = None
        self._pause_checked_at = time.monotonic()

    def _check_stage_pause(self) -> None:
        """Every PAUSE_CHECK_SECONDS: whether the stage is paused (by its dead-letter limit or an operator)."""
        now = time.monotonic()
        if now - self._pause_checked_at < PAUSE_CHECK_SECONDS:
            return
        self._pause_checked_at = now
        try:
            paused = line.pause_of(self.stage.name) is not None
        except Exception:  # the database is down: keep the last known state
            log.debug("reading the stage's pause failed", exc_info=True)
            reset_db_connection()
            return
        if self.processor.line.stopped is not None:  # stopped, but the pause is not written yet
            return
        if self._stage_paused and not paused:
            # resumed: the cause is fixed, the old outcomes no longer count
            self.processor.line.reset(accept=line.accepted_after_resume(self.stage.name))
            log.warning("stage resumed; consuming again", extra={"stage": self.stage.name})
        self._stage_paused = paused

    def _set_paused(self, paused: bool) -> None:
        # The assignment only when there is something to pause or resume: asking librdkafka for it on every
        # iteration was 3-5 % of a stage's Python time (py-spy, end to end).
        if paused:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.pause(assignment)  # every iteration: newly assigned partitions get paused too
        elif self._paused:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.resume(assignment)
        self._paused = paused

    def _housekeeping(self) -> None:
        if self._marker is None:
            try:
                publisher().mark_delivered()
            except Exception:
                log.exception("marking outbox rows sent failed", extra={"stage": self.stage.name})
                reset_db_connection()
        if not self.samples.due():
            return
        try:
            self.samples.record(self.consumer, breaker=self.breaker.state, paused=self._paused)
        except Exception:
            log.debug("sampling failed", exc_info=True)
            reset_db_connection()

    def close(self) -> None:
        if self._marker is not None:
            thread, stop = self._marker
            stop.set()
            thread.join(5)
        try:
            publisher().flush(5)
        except Exception:
            log.exception("outbox flush at shutdown failed")
        self.producer.flush(5)
        self.lanes.close()
        self.consumer.close()
        if self.stage.on_close:
            self.stage.on_close()
