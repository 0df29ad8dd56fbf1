"""`manage.py resume_stage NAME`: lift a pause, an operator's or stop-the-line's. Audited as cli:<user>."""
from django.core.management.base import BaseCommand, CommandError

from workers import line
from workers.command import bounded
from workers.management.commands.pause_stage import stage_name
from workers.management.commands.replay_dead_letters import operator_name


class Command(BaseCommand):
    help = "Resume a paused stage (after stop-the-line: once the cause is fixed). Events it rewound run again."

    def add_arguments(self, parser):
        parser.add_argument("stage", help="a stage name of settings.PIPELINE_STAGES")
        parser.add_argument("--reason", default="", help="why (kept in the audit trail)")
        parser.add_argument("--accept-dead-letters", type=bounded(int, 0, 1_000_000), default=0,
                            help="let this many dead letters through before the limit counts again (after "
                                 "stop-the-line on invalid messages that must go to the dead letters)")

    def handle(self, *args, stage, reason, accept_dead_letters, **options):
        name = stage_name(stage)
        paused = line.pause_of(name)
        if paused is None or not line.resume(name, actor=f"cli:{operator_name()}", reason=reason.strip(),
                                             accept_dead_letters=accept_dead_letters):
            raise CommandError(f"{name} is not paused")
        self.stdout.write(f"{name} resumed (it was paused by {paused.paused_by}: {paused.reason})")
