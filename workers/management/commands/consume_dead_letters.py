"""`manage.py consume_dead_letters`: store every dead-letter-queue message as a DeadLetter row, and run the due
chunk of any replay job between polls (workers.replay_jobs)."""
import logging

from django.conf import settings
from django.core.management.base import BaseCommand

from workers import metrics, replay_jobs
from workers.command import MAX_BATCH_SIZE, bounded
from workers.dead_letter_store import PERSISTER_GROUP, persist_batch
from workers.kafka import DEAD_LETTER_TOPIC, make_consumer, topic
from workers.loop import StopFlag, reset_db_connection, run_until_stopped

log = logging.getLogger(__name__)


def run_replay_jobs() -> None:
    """At most one chunk of one due job per poll: a replay at a set rate goes on while this process runs."""
    try:
        replay_jobs.run_chunk()
    except Exception:  # the database is down: the job waits, and the next poll tries again
        log.exception("running a replay job failed")
        reset_db_connection()


def subscribed_consumer():
    consumer = make_consumer(topic(PERSISTER_GROUP), **{"enable.auto.offset.store": True})
    consumer.subscribe([topic(DEAD_LETTER_TOPIC)])
    return consumer


class Command(BaseCommand):
    help = "Store every message of dead-letter-queue as a DeadLetter row (idempotent), for review in the admin."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=bounded(int, 1, MAX_BATCH_SIZE), default=500,
                            help=f"messages per poll (1 to {MAX_BATCH_SIZE})")
        parser.add_argument("--metrics-port", type=int, default=settings.METRICS_PORT,
                            help="serve Prometheus metrics on this port (0: off)")

    def handle(self, *args, batch_size, metrics_port, **options):
        metrics.serve(metrics_port)
        consumer = subscribed_consumer()

        def store_batch() -> bool:
            stored = persist_batch(consumer, batch_size=batch_size)
            metrics.DEAD_LETTERS_STORED.inc(stored)
            metrics.LAST_POLL.labels("dead_letters").set_to_current_time()
            run_replay_jobs()
            return True  # persist_batch waits for messages itself

        def reconnect() -> None:  # uncommitted messages come back to the next consumer of the group
            nonlocal consumer
            consumer.close()
            consumer = subscribed_consumer()

        try:
            run_until_stopped(store_batch, stop=StopFlag("dead_letters").install(), on_error=reconnect)
        finally:
            consumer.close()
