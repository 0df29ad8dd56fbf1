"""`manage.py worker_health --all|--stage NAME`: exit 1 when a consumer group is not consuming or lags too far,
or when a partition of the pipeline's topics is offline or under its min.insync.replicas.

Meant for a container health check, a cron-driven alert or a human: one line per group, then the exit code.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from workers.health import DEFAULT_TIMEOUT_SECONDS, check, pauses, replication, targets


class Command(BaseCommand):
    help = ("Check that each consumer group has active members and a lag at most --max-lag "
            "(and, with --max-idle-seconds, that it commits progress). Exits 1 when any group is unhealthy.")

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--stage", action="append", choices=sorted(targets()),
                           help="a consumer process name as in the Procfile (repeatable)")
        which.add_argument("--all", action="store_true", help="every consumer group of the pipeline")
        parser.add_argument("--max-lag", type=int, default=10_000,
                            help="unhealthy above this many unconsumed messages in total (default 10000)")
        parser.add_argument("--max-idle-seconds", type=float, default=0.0,
                            help="when there is lag, wait this long for a committed offset to move (0: don't)")
        parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                            help="seconds for each broker request")

    def handle(self, *args, stage: list[str] | None, all: bool, max_lag: int, max_idle_seconds: float,
               timeout: float, **options) -> None:
        known = targets()
        names = sorted(known) if all else stage or []
        unhealthy = []
        paused = pauses()
        for name in names:
            health = check(known[name], max_lag=max_lag, max_idle_seconds=max_idle_seconds, timeout=timeout,
                           pause=paused.get(name))
            self.stdout.write(health.line())
            if not health.healthy:
                unhealthy.append(name)
        topics = sorted({name for target in known.values() for name in target.topics})
        replicas = replication(topics, timeout=timeout)
        self.stdout.write(replicas.line())
        if not replicas.healthy:
            unhealthy.append("kafka partitions")
        if unhealthy:
            raise CommandError(f"unhealthy: {', '.join(unhealthy)}")
