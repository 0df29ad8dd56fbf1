from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workers.outbox import prune


class Command(BaseCommand):
    help = ("Delete sent outbox rows and processed events past their retention (never a processed event an "
            "unresolved dead letter may need for a safe replay).")

    def add_arguments(self, parser):
        parser.add_argument("--outbox-days", type=int, default=settings.OUTBOX_RETENTION_DAYS)
        parser.add_argument("--processed-days", type=int, default=settings.PROCESSED_EVENT_RETENTION_DAYS)

    def handle(self, *args, outbox_days, processed_days, **options):
        try:
            result = prune(outbox_days=outbox_days, processed_days=processed_days)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"deleted {result['outbox_events']} outbox event(s), "
                          f"{result['processed_events']} processed event(s)")
