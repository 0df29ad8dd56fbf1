"""The base management command of every stage: `consume_<stage>` only names its registered stage."""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand

from workers import metrics, registry
from workers.consumer import StageConsumer
from workers.stage import Stage

log = logging.getLogger(__name__)


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
        parser.add_argument("--batch-size", type=int, default=settings.WORKER_BATCH_SIZE)
        parser.add_argument("--batch-wait", type=float, default=settings.WORKER_BATCH_WAIT_SECONDS,
                            help="seconds to wait for a batch to fill")
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
