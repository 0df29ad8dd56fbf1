"""`manage.py pause_stage NAME --reason ...`: every consumer of the stage pauses its partitions within seconds
(still polling, still in the group) until `resume_stage NAME`. Audited as cli:<user>."""
from django.core.management.base import BaseCommand, CommandError

from workers import line, registry
from workers.management.commands.replay_dead_letters import operator_name


def stage_name(name: str) -> str:
    known = [s.name for s in registry.stages()]
    if name not in known:
        raise CommandError(f"unknown stage {name!r}; the stages are: {', '.join(known)}")
    return name


class Command(BaseCommand):
    help = "Pause a stage: its consumers stop consuming (and retrying) until resume_stage. Needs a reason."

    def add_arguments(self, parser):
        parser.add_argument("stage", help="a stage name of settings.PIPELINE_STAGES")
        parser.add_argument("--reason", required=True, help="why (kept in the audit trail)")

    def handle(self, *args, stage, reason, **options):
        if not reason.strip():
            raise CommandError("--reason must say why")
        name = stage_name(stage)
        if line.pause(name, reason=reason.strip(), actor=f"cli:{operator_name()}"):
            self.stdout.write(f"{name} paused; its consumers stop within {line.PAUSE_OBEYED_WITHIN_SECONDS} s")
        else:
            self.stdout.write(f"{name} was already paused: {line.pause_of(name).reason}")
