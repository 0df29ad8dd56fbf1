from allocations.handlers import STAGE
from workers.command import StageCommand


class Command(StageCommand):
    stage = STAGE
