"""`manage.py consume_allocations`: the allocations stage of settings.PIPELINE_STAGES."""
from workers.command import StageCommand


class Command(StageCommand):
    stage_name = "allocations"
