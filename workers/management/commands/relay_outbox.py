"""`manage.py relay_outbox`: publish outbox rows that were not published right after their commit."""
from django.conf import settings
from django.core.management.base import BaseCommand

from workers import metrics
from workers.loop import StopFlag, run_until_stopped
from workers.outbox import OutboxPublisher
from workers.relay import DueBound, relay_once


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
        stop = StopFlag("relay").install()
        due_bound = DueBound(grace)
        total = 0

        def one_pass() -> bool:
            nonlocal total
            sent = relay_once(relay, grace_seconds=grace, due_bound=due_bound)
            total += sent
            if once:
                stop.request()
            return sent > 0

        run_until_stopped(one_pass, stop=stop, idle_seconds=interval)
        relay.producer.flush(5)
        self.stdout.write(f"relayed {total} outbox event(s)")
