"""The base management command of every stage: `consume_<stage>` only names its registered stage."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.management.base import BaseCommand

from workers import metrics, registry
from workers.consumer import StageConsumer
from workers.stage import Stage

log = logging.getLogger(__name__)
MAX_BATCH_SIZE = 10_000  # messages held in memory at once; the allocation client splits what its API cannot take


def bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number in [low, high], or a clear error naming the range."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: from {low} to {high}")
        return value
    return parse


class StageCommand(BaseCommand):
    stage_name: str  # set by the subclass: a stage name of settings.PIPELINE_STAGES

    @property
    def stage(self) -> Stage:
        return registry.stage(self.stage_name)

    @property
    def help(self) -> str:  # type: ignore[override]
        s = self.stage
        return f"Consume {', '.join(s.topics)} as group {s.group_id} (stage {s.name}, {s.retry.max_attempts} attempts)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=bounded(int, 1, MAX_BATCH_SIZE), default=settings.WORKER_BATCH_SIZE,
                            help=f"messages per poll (1 to {MAX_BATCH_SIZE})")
        parser.add_argument("--batch-wait", type=bounded(float, 0, 60), default=settings.WORKER_BATCH_WAIT_SECONDS,
                            help="seconds to wait for a batch to fill (0 to 60)")
        parser.add_argument("--metrics-port", type=int, default=settings.METRICS_PORT,
                            help="serve Prometheus metrics on this port (0: off)")

    def handle(self, *args, batch_size, batch_wait, metrics_port, **options):
        metrics.serve(metrics_port)
        consumer = StageConsumer(self.stage, batch_size=batch_size, batch_wait=batch_wait)
        consumer.install_signal_handlers()
        log.info("consumer started", extra={"stage": self.stage.name, "group": self.stage.group_id,
                                            "topics": self.stage.topic_names()})
        consumer.run()
        log.info("consumer stopped", extra={"stage": self.stage.name})
