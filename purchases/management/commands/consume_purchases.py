"""`manage.py consume_purchases`: the purchases stage of settings.PIPELINE_STAGES."""
from workers.command import StageCommand


class Command(StageCommand):
    stage_name = "purchases"
