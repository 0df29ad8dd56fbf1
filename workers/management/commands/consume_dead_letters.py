import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from enrollment.events import DEAD_LETTER_TOPIC, topic
from enrollment.kafka import make_consumer
from workers import metrics
from workers.dead_letter_store import PERSISTER_GROUP, persist_batch

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Store every message of dead-letter-queue as a DeadLetter row (idempotent), for review in the admin."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--metrics-port", type=int, default=settings.METRICS_PORT,
                            help="serve Prometheus metrics on this port (0: off)")

    def handle(self, *args, batch_size, metrics_port, **options):
        metrics.serve(metrics_port)
        consumer = make_consumer(topic(PERSISTER_GROUP), **{"enable.auto.offset.store": True})
        consumer.subscribe([topic(DEAD_LETTER_TOPIC)])
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        signal.signal(signal.SIGINT, lambda *a: stop.append(1))
        try:
            while not stop:
                close_old_connections()
                try:
                    stored = persist_batch(consumer, batch_size=batch_size)
                    metrics.DEAD_LETTERS_STORED.inc(stored)
                    metrics.LAST_POLL.labels("dead_letters").set_to_current_time()
                except Exception:
                    log.exception("storing dead letters failed; will re-read them")
                    connection.close()
                    consumer.close()  # uncommitted messages come back to the next consumer of the group
                    time.sleep(1)
                    consumer = make_consumer(topic(PERSISTER_GROUP), **{"enable.auto.offset.store": True})
                    consumer.subscribe([topic(DEAD_LETTER_TOPIC)])
        finally:
            consumer.close()
