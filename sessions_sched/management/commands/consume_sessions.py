"""`manage.py consume_sessions`: the sessions stage of settings.PIPELINE_STAGES."""
from workers.command import StageCommand


class Command(StageCommand):
    stage_name = "sessions"
