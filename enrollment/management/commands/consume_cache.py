from enrollment.cache_invalidation import STAGE
from workers.command import StageCommand


class Command(StageCommand):
    stage = STAGE
