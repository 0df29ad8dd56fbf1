import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection

from workers import metrics
from workers.outbox import OutboxPublisher, relay_once

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Publish outbox rows that were not published right after their commit (the safety net)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--grace", type=float, default=2.0, help="leave rows younger than this to their producer")
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between passes when idle")
        parser.add_argument("--metrics-port", type=int, default=settings.METRICS_PORT)

    def handle(self, *args, once, grace, interval, metrics_port, **options):
        metrics.serve(metrics_port)
        relay = OutboxPublisher()
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        signal.signal(signal.SIGINT, lambda *a: stop.append(1))
        total = 0
        while not stop:
            close_old_connections()
            try:
                sent = relay_once(relay, grace_seconds=grace)
            except Exception:
                log.exception("relay pass failed")
                connection.close()
                sent = 0
                time.sleep(1)
            total += sent
            if once:
                break
            if sent == 0:
                time.sleep(interval)
        relay.producer.flush(5)
        self.stdout.write(f"relayed {total} outbox event(s)")
