"""Replay dead letters from the command line, with the admin action's semantics and audit trail."""
from __future__ import annotations

import datetime
import getpass
import os
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from workers import dead_letter_actions, replay_jobs
from workers.dead_letter_store import UNREPLAYABLE
from workers.models import DeadLetter, ReplayJob


def parse_since(value: str) -> datetime.datetime:
    """An ISO date (midnight in the current time zone) or datetime (naive means the current time zone)."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since: not an ISO date or datetime: {value!r}")
        moment = datetime.datetime.combine(day, datetime.time.min)
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def operator_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return os.environ.get("USER", "unknown")


class Command(BaseCommand):
    help = ("Republish dead letters to their original topics (same bytes and event id, plus replay.* headers) "
            "and mark them replayed. Filters combine with AND. Audited as cli:<user>.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", dest="ids", type=int, action="append", default=[],
                            help="a dead letter id (repeatable)")
        parser.add_argument("--stage", help="only this stage (exact)")
        parser.add_argument("--error", help="error class contains this (case-insensitive)")
        parser.add_argument("--since", type=parse_since, help="last failure at or after this ISO date/datetime")
        parser.add_argument("--status", default=DeadLetter.Status.NEW,
                            choices=[DeadLetter.Status.NEW, DeadLetter.Status.REPLAYED, DeadLetter.Status.PARKED],
                            help="only rows in this status (default: new); a replayed row is replayed again only "
                                 "once its last replay is older than REPLAY_STALE_SECONDS (5 min) without "
                                 "resolving; parked rows failed again after a replay, replay them once fixed")
        parser.add_argument("--rate", type=int, help="replay at most this many a second, as a replay job that "
                            "shows its progress here and in the admin (Replay jobs); without it, all at once")
        parser.add_argument("--dry-run", action="store_true", help="print what would be replayed, change nothing")

    def selection(self, *, ids: list[int], stage: str | None, error: str | None,
                  since: datetime.datetime | None, status: str) -> QuerySet:
        rows = DeadLetter.objects.filter(status=status)
        if ids:
            rows = rows.filter(pk__in=ids)
        if stage:
            rows = rows.filter(stage=stage)
        if error:
            rows = rows.filter(error_class__icontains=error)
        if since:
            rows = rows.filter(last_failed_at__gte=since)
        return rows.order_by("last_failed_at", "id")

    def handle(self, *args, ids, stage, error, since, status, rate, dry_run, **options) -> None:
        rows = list(self.selection(ids=ids, stage=stage, error=error, since=since, status=status))
        verb = "would replay" if dry_run else "replaying"
        for row in rows:
            self.stdout.write(f"{verb} #{row.pk} {row.stage} {row.error_class} event={row.event_id} "
                              f"-> {row.original_topic} (last failed {row.last_failed_at:%Y-%m-%d %H:%M:%S})")
        if dry_run:
            self.stdout.write(f"dry run: {len(rows)} dead letter(s) would be replayed")
            return
        if not rows:
            self.stdout.write("nothing to replay")
            return
        if rate is not None:
            self.run_job(rows, rate)
            return
        result = dead_letter_actions.replay(rows, actor=f"cli:{operator_name()}")
        self.stdout.write(f"replayed {result.replayed} of {len(rows)} dead letter(s)")
        for kind, count in sorted(result.refused.items()):
            self.stderr.write(f"{count} refused, {UNREPLAYABLE[kind]}")
        if result.replayed < len(rows):
            raise CommandError(f"{len(rows) - result.replayed} dead letter(s) not replayed: "
                               f"{sum(result.refused.values())} refused, {result.skipped} replayed a moment ago "
                               "by someone else or not acknowledged by the broker")

    def run_job(self, rows: list[DeadLetter], rate: int) -> None:
        """A replay job at `rate` a second, run here (the dead-letter persister helps if it runs: the job's lock
        keeps the two within the rate)."""
        if rate < 1:
            raise CommandError("--rate must be at least 1")
        job = replay_jobs.start(rows, rate=rate, actor=f"cli:{operator_name()}")
        self.stdout.write(f"replay job {job.pk}: {job.total} dead letter(s) at {rate}/s")
        while job.status not in (ReplayJob.Status.DONE, ReplayJob.Status.CANCELLED):
            ran = replay_jobs.run_chunk(job.pk)
            job = ran or ReplayJob.objects.get(pk=job.pk)
            if ran is not None:
                self.stdout.write(f"{job.position}/{job.total} taken, {job.replayed} replayed, {job.refused} "
                                  f"refused, {job.skipped} skipped")
            wait = (job.next_chunk_at - timezone.now()).total_seconds() if job.next_chunk_at else 0
            time.sleep(min(max(wait, 0.05), replay_jobs.CHUNK_SECONDS))
        self.stdout.write(f"replay job {job.pk} {job.status}: {job.replayed} of {job.total} replayed")
