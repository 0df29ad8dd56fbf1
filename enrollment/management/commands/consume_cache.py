"""`manage.py consume_cache`: the cache stage of settings.PIPELINE_STAGES."""
from workers.command import StageCommand


class Command(StageCommand):
    stage_name = "cache"
