"""Cron job (every 6 h): top up every active allocation with fewer than --threshold future sessions."""
from django.core.management.base import BaseCommand

from sessions_sched.scheduler import TOPUP_THRESHOLD, WINDOW_SIZE, topup_all


class Command(BaseCommand):
    help = "Top up the rolling window of sessions of every active allocation that runs low."

    def add_arguments(self, parser):
        parser.add_argument("--threshold", type=int, default=TOPUP_THRESHOLD, help="top up below this many")
        parser.add_argument("--size", type=int, default=WINDOW_SIZE, help="future sessions to keep")

    def handle(self, *args, threshold: int, size: int, **options) -> None:
        report = topup_all(threshold=threshold, size=size)
        self.stdout.write(
            f"active allocations checked: {report.active}; below {threshold}: {report.below_threshold}; "
            f"topped up: {report.topped_up}; sessions created: {report.sessions_created}; "
            f"skipped (locked by another run): {report.skipped_locked}"
        )
